"""Voxelisation: points -> unique integer voxel coordinates, features reduced per voxel, and the point->voxel map.

A point p falls into voxel floor(p / voxel_size). For clouds normalised to [0, 1]^3 pass `grid = 1 / voxel_size`
(0.02 -> 50, the paper's 50^3): points exactly on the upper face then land in the last voxel instead of a 51st.
Features of the points in one voxel are averaged (`reduce="mean"`, MinkowskiEngine's and torchsparse's usual
choice) or taken from the first point in input order (`reduce="first"`). Voxels come out sorted by (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Voxels:
    coords: np.ndarray  # int32 [M, 3]
    feats: np.ndarray | None  # float32 [M, C] (None when no features were given)
    point_to_voxel: np.ndarray  # int64 [P]: row of `coords` each input point fell into


def voxelize(points: np.ndarray, voxel_size: float, feats: np.ndarray | None = None, reduce: str = "mean",
             grid: int | None = None) -> Voxels:
    if voxel_size <= 0:
        raise ValueError(f"voxelize: voxel_size must be > 0, got {voxel_size}")
    if reduce not in ("mean", "first"):
        raise ValueError(f"voxelize: reduce must be 'mean' or 'first', got '{reduce}'")
    q = np.floor(np.asarray(points, dtype=np.float64) / voxel_size).astype(np.int64)
    if grid is not None:
        np.clip(q, 0, grid - 1, out=q)
    key = _pack(q)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    coords = q[first].astype(np.int32)
    out = None
    if feats is not None:
        feats = np.asarray(feats, dtype=np.float32)
        if reduce == "first":
            out = feats[first]
        else:
            counts = np.bincount(inverse, minlength=len(first)).astype(np.float64)
            out = np.stack([np.bincount(inverse, weights=feats[:, c], minlength=len(first)) / counts
                            for c in range(feats.shape[1])], axis=1).astype(np.float32)
            out = out.reshape(len(first), feats.shape[1])
    return Voxels(coords=coords, feats=out, point_to_voxel=inverse.astype(np.int64))


def voxel_majority(point_labels: np.ndarray, point_to_voxel: np.ndarray, num_voxels: int,
                   ignore: int = -1) -> np.ndarray:
    """Per-voxel label: the most frequent label among the voxel's points that are not `ignore` (ties: the smaller
    label); `ignore` where every point of a voxel is unlabelled."""
    out = np.full(num_voxels, ignore, dtype=np.int64)
    keep = point_labels != ignore
    if not keep.any():
        return out
    labels, vox = point_labels[keep].astype(np.int64), point_to_voxel[keep]
    width = int(labels.max()) + 1
    pairs, counts = np.unique(vox * width + labels, return_counts=True)
    pv, pl = pairs // width, pairs % width
    order = np.lexsort((pl, -counts, pv))  # by voxel, then most frequent, then smallest label
    pv, pl = pv[order], pl[order]
    first = np.ones(len(pv), bool)
    first[1:] = pv[1:] != pv[:-1]
    out[pv[first]] = pl[first]
    return out


def _pack(q: np.ndarray) -> np.ndarray:
    """One int64 key per row of integer coordinates, ordered like (x, y, z)."""
    q = q - q.min(0)
    dims = q.max(0) + 1
    return (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
