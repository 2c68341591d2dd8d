"""plinth-ties: TIES, DARE-TIES, task arithmetic and linear merging on one streaming engine.

Plain API (no pipeline needed):

    from plinth_ties import ModelRef, merge
    merge("ties", [ModelRef("sft/", weight=1, density=0.2), ModelRef("kto/")], out="merged/", base="base/")

Importing this package is light; torch is imported when a merge runs.
"""

# Names resolve on first use (PEP 562): the `plinth` entry point imports this package, and listing plugins
# must not pay for torch, trl or pydantic models.
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"METHODS": "engine", "MergeResult": "engine", "ModelRef": "engine", "merge": "engine", "MergeInputError": "errors"}

__all__ = ["METHODS", "MergeInputError", "MergeResult", "ModelRef", "merge"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
