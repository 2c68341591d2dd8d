"""plinth-deepspeed: the `deepspeed` parallel strategy (ZeRO stages 0-3, offload, bf16/fp16) for HF trainers."""

# Names resolve on first use: the `plinth` entry point imports this package, and listing plugins must not pay
# for torch, trl or pydantic.
from plinth.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DeepSpeedConfig": "ds_config",
        "build_ds_config": "ds_config",
        "DeepSpeedStrategy": "strategy",
    },
)
