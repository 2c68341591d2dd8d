"""plinth-kto: the `kto` trainer (trl KTOTrainer behind plinth's shared training helpers)."""

from .kto_config import KTOConfig, auto_weights
from .kto_trainer import KTOTrainer

__all__ = ["KTOConfig", "KTOTrainer", "auto_weights"]
__version__ = "0.1.0"
