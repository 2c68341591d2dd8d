"""Cutting a batch into micro-batches by cloud: rows of a cloud are contiguous in a SparseTensor, so a micro-batch
is a row range with its batch indices renumbered from 0. Targets split the same way: per cloud ([B] labels) or per
row ([N] voxel labels)."""

from __future__ import annotations

from typing import Any

import torch

from ..sparse.tensor import SparseTensor


def cloud_ranges(batch_size: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous ranges of clouds, sizes differing by at most one (the larger first)."""
    if parts < 1 or batch_size < parts:
        raise ValueError(f"cannot cut a batch of {batch_size} clouds into {parts} micro-batches "
                         "(each needs at least one cloud): use fewer micro-batches or a larger batch")
    base, extra = divmod(batch_size, parts)
    out, at = [], 0
    for i in range(parts):
        n = base + (i < extra)
        out.append((at, at + n))
        at += n
    return out


def split(inputs: Any, target: torch.Tensor | None, parts: int) -> list[tuple[Any, torch.Tensor | None]]:
    if parts == 1:
        return [(inputs, target)]
    if isinstance(inputs, SparseTensor):
        batch = inputs.batch_size
        offsets = inputs.batch_offsets().tolist()
        per_row = target is not None and target.shape[0] == len(inputs) and len(inputs) != batch
        out = []
        for a, b in cloud_ranges(batch, parts):
            rows = slice(offsets[a], offsets[b])
            coords = inputs.coords[rows].clone()
            coords[:, 0] -= a
            x = SparseTensor(coords, inputs.feats[rows], inputs.stride, batch_size=b - a)
            t = None if target is None else (target[rows] if per_row else target[a:b])
            out.append((x, t))
        return out
    batch = int(inputs.shape[0])
    return [(inputs[a:b], None if target is None else target[a:b]) for a, b in cloud_ranges(batch, parts)]
