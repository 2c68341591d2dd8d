"""Feature-wise ops that keep coordinates: apply a function to features, concatenate channels (U-Net skips)."""

from __future__ import annotations

from typing import Callable

import torch

from ..tensor import SparseTensor


def apply_feats(x: SparseTensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> SparseTensor:
    return x.replace(fn(x.feats))


def cat(tensors: list[SparseTensor] | tuple[SparseTensor, ...]) -> SparseTensor:
    """Concatenate features of tensors with the same coordinates (same rows in the same order) along channels."""
    if not tensors:
        raise ValueError("cat: no tensors")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], 1):
        same = t.coords is first.coords or (
            t.coords.shape == first.coords.shape and bool(torch.equal(t.coords, first.coords))
        )
        if not same or t.stride != first.stride:
            raise ValueError(
                f"cat: tensor {i} has different coordinates (n={len(t)}, stride={t.stride}) than tensor 0 "
                f"(n={len(first)}, stride={first.stride}); U-Net skips join tensors of the same resolution"
            )
    return first.replace(torch.cat([t.feats for t in tensors], 1))
