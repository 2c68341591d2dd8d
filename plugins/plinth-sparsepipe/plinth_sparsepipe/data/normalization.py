"""Normalisation of a cloud into [0, 1]^3 before voxelisation, in the two ways users meet.

- `unit_cube`: centre the bounding box and scale uniformly so its longest side is 1; shapes keep their aspect.
- `per_axis`: (p - min) / (max - min) on each axis separately, as SparsePipe's ModelNet40 code does; every
  axis fills [0, 1], so a long thin object is stretched into a cube (aspect ratios are lost).
A flat axis (max == min) is placed at 0.5 by both, never divided by zero.
"""

from __future__ import annotations

import numpy as np


def normalize_unit_cube(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    extent = float((hi - lo).max())
    scale = 1.0 / extent if extent > 0 else 1.0
    return ((points - (lo + hi) / 2) * scale + 0.5).astype(np.float32)


def normalize_per_axis(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    extent = hi - lo
    flat = extent <= 0
    out = (points - lo) / np.where(flat, 1.0, extent)
    out[:, flat] = 0.5
    return out.astype(np.float32)


NORMALIZERS = {"unit_cube": normalize_unit_cube, "per_axis": normalize_per_axis}


def normalize(points: np.ndarray, how: str) -> np.ndarray:
    """`how` is "unit_cube", "per_axis" or "none" (points returned as they are)."""
    if how == "none":
        return points.astype(np.float32, copy=False)
    try:
        return NORMALIZERS[how](points)
    except KeyError:
        raise ValueError(f"normalize: unknown '{how}'; choose one of unit_cube, per_axis, none") from None
