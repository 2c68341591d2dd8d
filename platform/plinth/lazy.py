"""Lazy package exports (PEP 562), so that importing a package — as the `plinth` entry point does for every
plugin — costs nothing until one of its names is used. One helper for the core and every plugin:

    __getattr__, __all__ = lazy_exports(__name__, {"SFTTrainer": "sft_trainer", "SFTConfig": "sft_config"})
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module `__getattr__` resolving each name from its submodule on first use, and the `__all__` list."""
    import sys

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__, sorted(exports)
