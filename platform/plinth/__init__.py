"""plinth: a plugin-based platform for training models (post-training language models, sparse 3D point-cloud networks).

The public API a plugin needs is importable from here. Names are resolved on first use (PEP 562), so a plugin's
`from plinth import hookimpl` costs only pluggy, and `plinth --help` never pays for pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hookspecs import hookimpl
from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Artifact": "artifacts",
    "Component": "components",
    "ComponentConfig": "components",
    "Evaluator": "components",
    "Generator": "components",
    "LaunchSpec": "components",
    "Merger": "components",
    "Strategy": "components",
    "Trainer": "components",
    "StageContext": "context",
    "ConfigError": "errors",
    "PlinthError": "errors",
    "PluginError": "errors",
}

__getattr__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = [*_names, "__version__", "hookimpl"]


if TYPE_CHECKING:  # for type checkers and IDEs
    from .artifacts import Artifact
    from .components import (
        Component,
        ComponentConfig,
        Evaluator,
        Generator,
        LaunchSpec,
        Merger,
        Strategy,
        Trainer,
    )
    from .context import StageContext
    from .errors import ConfigError, PlinthError, PluginError
