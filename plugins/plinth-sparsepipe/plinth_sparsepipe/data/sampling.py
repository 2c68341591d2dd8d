"""Choosing points: farthest-point sampling, random sampling to N, and area-weighted sampling of triangle meshes."""

from __future__ import annotations

import numpy as np


def farthest_point_sample(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Indices of `k` points chosen greedily, each the farthest (Euclidean) from those already chosen, starting at
    index `start`. `points` is [N, 3] or a batch [B, N, 3] (-> [B, k]); one pass over N per chosen point, vectorised
    over the batch. Ties go to the lowest index."""
    pts = np.asarray(points, dtype=np.float32)
    single = pts.ndim == 2
    if single:
        pts = pts[None]
    b, n, _ = pts.shape
    if not 0 < k <= n:
        raise ValueError(f"farthest_point_sample: k must be in 1..{n}, got {k}")
    x, y, z = (np.ascontiguousarray(pts[..., i]) for i in range(3))
    rows = np.arange(b)
    chosen = np.empty((b, k), dtype=np.int64)
    best = np.full((b, n), np.inf, dtype=np.float32)
    cur = np.full(b, start, dtype=np.int64)
    d, t = np.empty((b, n), np.float32), np.empty((b, n), np.float32)
    for i in range(k):
        chosen[:, i] = cur
        np.subtract(x, x[rows, cur][:, None], out=d)
        np.multiply(d, d, out=d)
        np.subtract(y, y[rows, cur][:, None], out=t)
        np.multiply(t, t, out=t)
        d += t
        np.subtract(z, z[rows, cur][:, None], out=t)
        np.multiply(t, t, out=t)
        d += t
        np.minimum(best, d, out=best)
        cur = best.argmax(1)
    return chosen[0] if single else chosen


def random_sample(num_points: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` of `num_points` points: without replacement, and with replacement only when there are fewer
    than `n` (then every point appears at least once)."""
    if num_points <= 0:
        raise ValueError("random_sample: the cloud has no points")
    if num_points >= n:
        return rng.choice(num_points, size=n, replace=False)
    extra = rng.integers(0, num_points, size=n - num_points)
    return rng.permutation(np.concatenate([np.arange(num_points), extra]))


def pick_by_weight(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices drawn with probability proportional to `weights` (cheaper than rng.choice(p=...))."""
    cum = np.cumsum(weights)
    return np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(cum) - 1)


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-face area and unit normal (zero for a degenerate face)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    norm = np.linalg.norm(cross, axis=1)
    return norm / 2, cross / np.where(norm > 0, norm, 1.0)[:, None]


def sample_triangles(vertices: np.ndarray, faces: np.ndarray, n: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` points uniform over the surface of a triangle mesh (faces picked by area, then uniform barycentric
    coordinates) and the face normal of each. Raises ValueError on a mesh of zero area."""
    areas, normals = triangle_areas(vertices, faces)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the mesh has zero surface area")
    face = pick_by_weight(areas, n, rng)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = (vertices[faces[face, i]] for i in range(3))
    pts = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    return pts.astype(np.float32), normals[face].astype(np.float32)
