"""Local max/average pooling over a kernel map, and global pooling per cloud (-> dense [B, C]).

Sparse pooling reduces over the *active* inputs of each window: max ignores empty sites (dense `max_pool3d` on a
grid filled with -inf agrees), average divides by the number of active inputs (dense avg_pool3d of the features
divided by avg_pool3d of the occupancy agrees). Output coordinates are those of a strided conv with the same
kernel and stride (`kmap.downsample_map`), or the input's for stride 1.
"""

from __future__ import annotations

import torch

from ..kmap import KernelMap
from ..tensor import SparseTensor
from .maps import op_map


def _all_pairs(kmap: KernelMap) -> tuple[torch.Tensor, torch.Tensor]:
    if kmap.identity is None:
        return kmap.in_idx, kmap.out_idx
    eye = torch.arange(kmap.n_out, device=kmap.in_idx.device)
    return torch.cat([kmap.in_idx, eye]), torch.cat([kmap.out_idx, eye])


def _pooled(x: SparseTensor, kernel_size: int, stride: int, dilation: int, reduce: str, transposed: bool = False):
    choice = op_map(x, kernel_size, stride, dilation, transposed)
    i_in, i_out = _all_pairs(choice.kmap)
    c = x.num_channels
    src = x.feats.index_select(0, i_in)
    index = i_out[:, None].expand(-1, c)
    if reduce == "amax":
        out = x.feats.new_zeros(choice.kmap.n_out, c).scatter_reduce(0, index, src, "amax", include_self=False)
    else:
        out = x.feats.new_zeros(choice.kmap.n_out, c).index_add(0, i_out, src)
        count = torch.bincount(i_out, minlength=choice.kmap.n_out).clamp_(min=1).to(out.dtype)
        out = out / count[:, None]
    return SparseTensor(choice.coords, out, choice.stride, batch_size=x._batch_size, cache=choice.cache)


def max_pool3d(x: SparseTensor, kernel_size: int = 2, stride: int | None = None, dilation: int = 1) -> SparseTensor:
    """Max over active inputs of each window (stride defaults to kernel_size, like torch)."""
    return _pooled(x, kernel_size, kernel_size if stride is None else stride, dilation, "amax")


def avg_pool3d(x: SparseTensor, kernel_size: int = 2, stride: int | None = None, dilation: int = 1) -> SparseTensor:
    """Mean over active inputs of each window (stride defaults to kernel_size, like torch)."""
    return _pooled(x, kernel_size, kernel_size if stride is None else stride, dilation, "mean")


def _per_cloud(x: SparseTensor, reduce: str) -> torch.Tensor:
    b = x.coords[:, 0].long()
    B, c = x.batch_size, x.num_channels
    if reduce == "amax":
        return x.feats.new_zeros(B, c).scatter_reduce(0, b[:, None].expand(-1, c), x.feats, "amax", include_self=False)
    total = x.feats.new_zeros(B, c).index_add(0, b, x.feats)
    return total / torch.bincount(b, minlength=B).clamp_(min=1).to(total.dtype)[:, None]


def global_max_pool(x: SparseTensor) -> torch.Tensor:
    """[B, C]: max over each cloud's points (0 for an empty cloud)."""
    return _per_cloud(x, "amax")


def global_avg_pool(x: SparseTensor) -> torch.Tensor:
    """[B, C]: mean over each cloud's points (0 for an empty cloud)."""
    return _per_cloud(x, "mean")
