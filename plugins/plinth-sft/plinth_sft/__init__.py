"""plinth-sft: the `sft` trainer (trl SFTTrainer behind plinth's shared training helpers)."""

# Names resolve on first use: the `plinth` entry point imports this package, and listing plugins must not pay
# for torch, trl or pydantic.
from plinth.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SFTConfig": "sft_config",
        "SFTTrainer": "sft_trainer",
    },
)
