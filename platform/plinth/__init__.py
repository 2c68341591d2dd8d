"""plinth: a plugin-based platform for post-training models.

The public API a plugin needs is importable from here; nothing heavy (torch, transformers) is imported.
"""

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
from .hookspecs import hookimpl

__version__ = "0.1.0"

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
    "hookimpl",
    "__version__",
]
