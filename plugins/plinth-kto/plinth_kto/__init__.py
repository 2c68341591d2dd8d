"""plinth-kto: the `kto` trainer (trl KTOTrainer behind plinth's shared training helpers)."""

# Names resolve on first use (PEP 562): the `plinth` entry point imports this package, and listing plugins
# must not pay for torch, trl or pydantic models.
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"KTOConfig": "kto_config", "auto_weights": "kto_config", "KTOTrainer": "kto_trainer"}

__all__ = ["KTOConfig", "KTOTrainer", "auto_weights"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
