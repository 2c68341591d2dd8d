"""The procedural shape classes (primitives and compositions of them) and how one sample of a class is drawn.

Every class draws its own proportions from ranges wide enough to vary and narrow enough that classes stay
apart: the bars of an L, a T and a cross have the same look, a cone and a pyramid differ only in their base, a
capsule and a cylinder only in their ends. One sample = class parts (canonical size about 1) -> surface points by
area -> anisotropic stretch (area-corrected) -> optional cut by a random half-space (partial occlusion) ->
Gaussian noise -> random pose (rotation, scale, shift). Deterministic given the generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .augment import rotation_about
from .primitives import Cone, Cylinder, Placed, Sphere, Torus, box, sample_union, square_pyramid, triangular_prism

ALONG_X = rotation_about(1, math.pi / 2)  # turns the z axis onto x


def _sphere(rng):
    return [Sphere(0.5)]


def _box(rng):
    return [box(*rng.uniform(0.25, 0.5, 3))]


def _cylinder(rng):
    return [Cylinder(rng.uniform(0.25, 0.45), rng.uniform(0.3, 0.5))]


def _cone(rng):
    h = rng.uniform(0.7, 1.0)
    return [Placed(Cone(rng.uniform(0.3, 0.5), h), shift=(0, 0, -h / 2))]


def _torus(rng):
    return [Torus(rng.uniform(0.32, 0.4), rng.uniform(0.08, 0.15))]


def _pyramid(rng):
    return [square_pyramid(rng.uniform(0.35, 0.5), rng.uniform(0.7, 1.0))]


def _prism(rng):
    return [triangular_prism(rng.uniform(0.35, 0.5), rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.5))]


def _capsule(rng):
    r, half = rng.uniform(0.15, 0.25), rng.uniform(0.25, 0.4)
    return [Cylinder(r, half, caps=False), Placed(Sphere(r), shift=(0, 0, half)),
            Placed(Sphere(r), shift=(0, 0, -half))]


def _bars(rng):
    """Shared proportions of the bar shapes: half length a, half height b, half thickness t, half depth w."""
    return rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.5), rng.uniform(0.08, 0.14), rng.uniform(0.1, 0.2)


def _l_shape(rng):
    a, b, t, w = _bars(rng)
    return [box(t, w, b, center=(-a + t, 0, 0)), box(a, w, t, center=(0, 0, -b + t))]


def _t_shape(rng):
    a, b, t, w = _bars(rng)
    return [box(t, w, b), box(a, w, t, center=(0, 0, b - t))]


def _cross(rng):
    a, b, t, w = _bars(rng)
    return [box(t, w, b), box(a, w, t, center=(0, 0, rng.uniform(-0.1, 0.2)))]


def _dumbbell(rng):
    r, c, bar = rng.uniform(0.17, 0.24), rng.uniform(0.28, 0.35), rng.uniform(0.05, 0.08)
    return [Placed(Cylinder(bar, c, caps=False), rot=ALONG_X), Placed(Sphere(r), shift=(c, 0, 0)),
            Placed(Sphere(r), shift=(-c, 0, 0))]


def _table(rng):
    a, b, top, leg = rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.5), rng.uniform(0.03, 0.05), rng.uniform(0.03, 0.05)
    h = rng.uniform(0.3, 0.45)  # half height of the whole table
    parts = [box(a, b, top, center=(0, 0, h - top))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box(leg, leg, h - top, center=(sx * (a - leg), sy * (b - leg), -top)))
    return parts


SHAPE_CLASSES: dict[str, Callable[[np.random.Generator], list]] = {
    "sphere": _sphere, "box": _box, "cylinder": _cylinder, "cone": _cone, "torus": _torus, "pyramid": _pyramid,
    "prism": _prism, "capsule": _capsule, "l_shape": _l_shape, "t_shape": _t_shape, "cross": _cross,
    "dumbbell": _dumbbell, "table": _table,
}


@dataclass(frozen=True)
class ShapeStyle:
    """How much each sample varies around its class (the knobs of the `shapes` generator)."""

    rotation: str = "z"  # "none", "z" (upright, like ModelNet40) or "so3"
    scale: tuple[float, float] = (0.5, 1.5)
    anisotropy: float = 0.2  # each axis stretched by U[1 - a, 1 + a]
    occlusion: float = 0.5  # probability of a cut by a random half-space
    occlusion_max: float = 0.3  # the cut removes a fraction U[0.05, max] of the surface
    noise: float = 0.005  # Gaussian sigma per coordinate, in canonical units (size about 1)


def random_rotation(rng: np.random.Generator, how: str) -> np.ndarray:
    if how == "none":
        return np.eye(3)
    if how == "z":
        return rotation_about(2, rng.uniform(0, 2 * math.pi))
    q = rng.normal(size=4)  # uniform on SO(3): a normalised Gaussian quaternion
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def stretched_surface(parts: list, n: int, rng: np.random.Generator, stretch: np.ndarray,
                      cut_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exactly `n` points uniform by area over the union of `parts` stretched by diag(`stretch`), with normals and
    part index. A stretch changes areas by |n / s| per unit normal n, so points are kept with probability
    |n / s| * min(s), which makes the stretched surface uniform again. `cut_fraction` > 0 removes that share of
    the surface beyond a random plane."""
    keep_p, keep_n, keep_w, have = [], [], [], 0
    cut = None
    rate = 0.8 * (1 - cut_fraction)  # share of drawn points that survive; re-estimated from each batch
    while have < n:
        m = int((n - have) / rate * 1.1) + 32
        p, nrm, which = sample_union(parts, m, rng)
        p = p * stretch
        scaled_n = nrm / stretch
        w = np.sqrt((scaled_n * scaled_n).sum(1))
        ok = rng.random(len(p)) < w * stretch.min()
        if cut_fraction > 0:
            if cut is None:
                d = rng.normal(size=3)
                d /= np.linalg.norm(d)
                proj = p[ok] @ d
                k = min(int(len(proj) * (1 - cut_fraction)), len(proj) - 1)
                cut = (d, np.partition(proj, k)[k])
            ok &= p @ cut[0] < cut[1]
        keep_p.append(p[ok])
        keep_n.append(scaled_n[ok] / w[ok, None])
        keep_w.append(which[ok])
        have += len(keep_p[-1])
        rate = max(len(keep_p[-1]) / m, 0.05)
    p, nrm, which = np.concatenate(keep_p), np.concatenate(keep_n), np.concatenate(keep_w)
    pick = rng.permutation(len(p))[:n]
    return p[pick], nrm[pick], which[pick]


def make_shape(name: str, n: int, rng: np.random.Generator,
               style: ShapeStyle = ShapeStyle()) -> tuple[np.ndarray, np.ndarray]:
    """One sample of class `name`: float32 points [n, 3] and unit normals [n, 3]."""
    parts = SHAPE_CLASSES[name](rng)
    stretch = rng.uniform(1 - style.anisotropy, 1 + style.anisotropy, 3)
    cut = 0.0
    if rng.random() < style.occlusion and style.occlusion_max > 0.05:
        cut = rng.uniform(0.05, style.occlusion_max)
    p, nrm, _ = stretched_surface(parts, n, rng, stretch, cut)
    if style.noise > 0:
        p = p + rng.normal(0, style.noise, p.shape)
    rot = random_rotation(rng, style.rotation)
    p = (p @ rot.T) * rng.uniform(*style.scale) + rng.uniform(-0.5, 0.5, 3)
    return p.astype(np.float32), (nrm @ rot.T).astype(np.float32)
