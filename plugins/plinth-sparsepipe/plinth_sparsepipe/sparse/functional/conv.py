"""Sparse 3D convolution: kernel map (cached on the tensor) -> back end's gather-GEMM-scatter -> bias."""

from __future__ import annotations

import torch

from ..backends import get_backend
from ..tensor import SparseTensor
from .maps import op_map


def conv3d(
    x: SparseTensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    transposed: bool = False,
    submanifold: bool | None = None,
    backend: str | None = None,
) -> SparseTensor:
    """weight [k^3, Cin, Cout]. Output coordinates: see `plinth_sparsepipe.sparse.kmap` and `functional.maps`."""
    K = kernel_size**3
    if weight.dim() != 3 or weight.shape[0] != K or weight.shape[1] != x.num_channels:
        raise ValueError(
            f"conv3d: weight must be [{K}, {x.num_channels}, Cout] for kernel {kernel_size} on {x.num_channels} "
            f"channels, got {tuple(weight.shape)}"
        )
    choice = op_map(x, kernel_size, stride, dilation, transposed, submanifold)
    feats = get_backend(backend).conv(x.feats, weight, choice.kmap)
    if bias is not None:
        feats = feats + bias
    return SparseTensor(choice.coords, feats, choice.stride, batch_size=x._batch_size, cache=choice.cache)
