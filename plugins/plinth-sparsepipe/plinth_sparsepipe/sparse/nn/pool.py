"""Pooling modules: local max/avg (SparseTensor -> SparseTensor) and global max/avg (SparseTensor -> [B, C])."""

from __future__ import annotations

from torch import nn

from .. import functional as F


class MaxPool3d(nn.Module):
    def __init__(self, kernel_size: int = 2, stride: int | None = None, dilation: int = 1):
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, kernel_size if stride is None else stride, dilation

    def forward(self, x):
        return F.max_pool3d(x, self.kernel_size, self.stride, self.dilation)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool3d(MaxPool3d):
    def forward(self, x):
        return F.avg_pool3d(x, self.kernel_size, self.stride, self.dilation)


class GlobalMaxPool(nn.Module):
    def forward(self, x):
        return F.global_max_pool(x)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return F.global_avg_pool(x)
