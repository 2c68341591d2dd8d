"""plinth-deepspeed: the `deepspeed` parallel strategy (ZeRO stages 0-3, offload, bf16/fp16) for HF trainers."""

# Names resolve on first use (PEP 562): the `plinth` entry point imports this package, and listing plugins
# must not pay for torch, trl or pydantic models.
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"DeepSpeedConfig": "ds_config", "build_ds_config": "ds_config", "DeepSpeedStrategy": "strategy"}

__all__ = ["DeepSpeedConfig", "DeepSpeedStrategy", "build_ds_config"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
