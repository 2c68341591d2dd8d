"""plinth-deepspeed: the `deepspeed` parallel strategy (ZeRO stages 0-3, offload, bf16/fp16) for HF trainers."""

from .ds_config import DeepSpeedConfig, build_ds_config
from .strategy import DeepSpeedStrategy

__all__ = ["DeepSpeedConfig", "DeepSpeedStrategy", "build_ds_config"]
__version__ = "0.1.0"
