"""plinth-sft: the `sft` trainer (trl SFTTrainer behind plinth's shared training helpers)."""

from .sft_config import SFTConfig
from .sft_trainer import SFTTrainer

__all__ = ["SFTConfig", "SFTTrainer"]
__version__ = "0.1.0"
