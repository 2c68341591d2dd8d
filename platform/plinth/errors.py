"""Errors a user sees. Each names where the problem is (file, stage, field) so it can be fixed without a traceback."""

from __future__ import annotations


class PlinthError(Exception):
    """Base class: the CLI prints these as one clean message and exits 2."""


class ConfigError(PlinthError):
    """A pipeline, registry or component config is invalid; raised before any work starts."""


class PluginError(PlinthError):
    """A plugin failed to load or registered something inconsistent."""


class UnknownComponentError(ConfigError):
    """A component name that no loaded plugin registered."""


class RunLockedError(PlinthError):
    """Another live process is writing the same run directory."""


class StageFailedError(PlinthError):
    """A stage raised; the manifest records the failure and earlier stages stay complete."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: recorded as `interrupted` (not `failed`); the CLI exits 128 + signal."""

    def __init__(self, signum: int = 2):
        super().__init__(f"signal {signum}")
        self.signum = signum
