"""Conv3d on SparseTensor: submanifold, strided (generalized), generative and transposed, one module."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import functional as F
from ..tensor import SparseTensor


class Conv3d(nn.Module):
    """Sparse 3D convolution. weight [k^3, in, out] (offset order: `kmap` module); bias [out] when bias=True.

    stride 1: submanifold (outputs at the input coordinates) unless submanifold=False (generative: every site the
    kernel reaches). stride s > 1: outputs at floor(c / (t*s)) * (t*s). transposed=True with stride s: back to the
    coordinates at stride t/s, using the strided map of the same kernel size with roles swapped. `backend`: None =
    the process default (`backends.set_default_backend`).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
        bias: bool = False, transposed: bool = False, submanifold: bool | None = None, backend: str | None = None,
    ):
        super().__init__()
        if submanifold and stride != 1:
            raise ValueError(f"Conv3d: a submanifold convolution has stride 1, got stride {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.transposed, self.submanifold, self.backend = transposed, submanifold, backend
        self.kernel_volume = kernel_size**3
        self.weight = nn.Parameter(torch.empty(self.kernel_volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's Conv3d default: uniform(+-1/sqrt(fan_in)), fan_in = in_channels * k^3."""
        bound = 1 / math.sqrt(self.in_channels * self.kernel_volume)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return F.conv3d(
            x, self.weight, self.bias, self.kernel_size, self.stride, self.dilation, self.transposed,
            self.submanifold, self.backend,
        )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        if self.transposed:
            s += ", transposed=True"
        if self.submanifold is False:
            s += ", submanifold=False"
        return s
