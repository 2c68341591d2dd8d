"""plinth: a plugin-based platform for post-training models.

The public API a plugin needs is importable from here. Names are resolved on first use (PEP 562), so a plugin's
`from plinth import hookimpl` costs only pluggy, and `plinth --help` never pays for pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

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

__all__ = [
    "Artifact",
    "Component",
    "ComponentConfig",
    "ConfigError",
    "Evaluator",
    "Generator",
    "LaunchSpec",
    "Merger",
    "PlinthError",
    "PluginError",
    "StageContext",
    "Strategy",
    "Trainer",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'plinth' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
