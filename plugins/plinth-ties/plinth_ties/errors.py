"""The merger's one error type: bad inputs, always raised before any output is written."""

from __future__ import annotations

from plinth import ConfigError


class MergeInputError(ConfigError):
    """An input model or merge parameter is unusable; the message names the model, the tensor and the problem."""
