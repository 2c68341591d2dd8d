"""Batching variable-size clouds into one SparseTensor: a batch column in front of each cloud's coordinates."""

from __future__ import annotations

from typing import Sequence

import torch

from .kmap import pack
from .tensor import SparseTensor


def _as_tensor(a, name: str, i: int) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    try:
        return torch.as_tensor(a)
    except Exception as e:  # noqa: BLE001 - the message says which cloud and which field
        raise TypeError(f"sparse_collate: cloud {i}: {name} is not array-like ({type(a).__name__})") from e


def sparse_collate(clouds: Sequence[tuple], stride: int = 1) -> SparseTensor:
    """[(coords [Ni, 3] int, feats [Ni, C]), ...] -> SparseTensor with coords (i, x, y, z) and batch_size len(clouds).

    Rows keep their order, cloud after cloud, so per-point labels batch with a plain `torch.cat`. Coordinates must
    be unique within a cloud (voxelise first): a duplicate is an error naming the cloud.
    """
    if not clouds:
        raise ValueError("sparse_collate: no clouds")
    coords, feats = [], []
    for i, item in enumerate(clouds):
        if len(item) != 2:
            raise ValueError(f"sparse_collate: cloud {i} must be (coords, feats), got {len(item)} items")
        c, f = _as_tensor(item[0], "coords", i), _as_tensor(item[1], "feats", i)
        if c.dim() != 2 or c.shape[1] != 3 or c.dtype.is_floating_point:
            raise ValueError(
                f"sparse_collate: cloud {i}: coords must be integer [N, 3], got {c.dtype} {tuple(c.shape)}"
            )
        if f.dim() != 2 or f.shape[0] != c.shape[0]:
            raise ValueError(f"sparse_collate: cloud {i}: feats must be [{c.shape[0]}, C], got {tuple(f.shape)}")
        if feats and f.shape[1] != feats[0].shape[1]:
            raise ValueError(
                f"sparse_collate: cloud {i} has {f.shape[1]} feature channels, cloud 0 has {feats[0].shape[1]}"
            )
        coords.append(torch.cat([c.new_full((len(c), 1), i), c], 1).to(torch.int32))
        feats.append(f)
    out = SparseTensor(torch.cat(coords), torch.cat(feats), stride, batch_size=len(clouds))
    keys = pack(out.coords)
    if len(keys) and len(torch.unique(keys)) != len(keys):
        sk = torch.sort(keys).values
        dup = int(sk[:-1][sk[1:] == sk[:-1]][0] >> 48)
        raise ValueError(f"sparse_collate: cloud {dup} has duplicate coordinates (voxelise and deduplicate first)")
    return out
