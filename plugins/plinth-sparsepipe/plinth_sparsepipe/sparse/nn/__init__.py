"""nn.Modules taking and returning SparseTensor (global pools return dense [B, C]); a model is a Sequential of them."""

from ..functional import cat
from .conv import Conv3d
from .pointwise import ELU, GELU, BatchNorm, Dropout, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from .pool import AvgPool3d, GlobalAvgPool, GlobalMaxPool, MaxPool3d

__all__ = [
    "AvgPool3d", "BatchNorm", "Conv3d", "Dropout", "ELU", "GELU", "GlobalAvgPool", "GlobalMaxPool",
    "LeakyReLU", "MaxPool3d", "ReLU", "SiLU", "Sigmoid", "Tanh", "cat",
]
