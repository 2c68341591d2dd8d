"""Procedural segmentation scenes: a square floor with several shapes standing on it, every point labelled.

Label 0 is the floor (background); label k + 1 is object class k. Objects are drawn like the classification
shapes (area-uniform surfaces, anisotropic stretch, rotation about the vertical), set on the floor without
overlapping, and the scene's points are shared out by surface area, so a big object gets more points than a
small one, as in a scan (the floor under an object is sampled too). Deterministic given the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import sample_union
from .shapes import SHAPE_CLASSES, random_rotation, stretched_surface

FLOOR = "floor"


@dataclass(frozen=True)
class SceneStyle:
    objects: tuple[int, int] = (3, 6)  # objects per scene, drawn from U{lo..hi} (fewer when they do not fit)
    floor_size: float = 2.5  # side of the square floor
    object_scale: tuple[float, float] = (0.5, 0.9)  # canonical shapes are about 1 across
    anisotropy: float = 0.2
    noise: float = 0.003


@dataclass
class _Object:
    parts: list
    label: int
    stretch: np.ndarray
    scale: float
    radius: float  # in the floor plane, after stretch and scale
    xy: np.ndarray | None = None

    @property
    def area(self) -> float:  # about right: the stretch's effect on area is averaged
        return sum(p.area for p in self.parts) * self.scale**2 * float(np.prod(self.stretch)) ** (2 / 3)


def scene_class_names(classes: list[str]) -> list[str]:
    return [FLOOR, *classes]


def make_scene(n: int, classes: list[str], rng: np.random.Generator,
               style: SceneStyle = SceneStyle()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 points [n, 3], unit normals [n, 3] and int32 labels [n] of one scene."""
    half = style.floor_size / 2
    placed: list[_Object] = []
    for _ in range(rng.integers(style.objects[0], style.objects[1] + 1)):
        k = int(rng.integers(len(classes)))
        parts = SHAPE_CLASSES[classes[k]](rng)
        stretch = rng.uniform(1 - style.anisotropy, 1 + style.anisotropy, 3)
        scale = rng.uniform(*style.object_scale)
        probe = sample_union(parts, 256, rng)[0][:, :2]
        obj = _Object(parts, k + 1, stretch, scale, float(np.sqrt((probe**2).sum(1)).max()) * scale * stretch.max())
        for _try in range(20):
            xy = rng.uniform(-half + obj.radius, half - obj.radius, 2)
            if all(np.hypot(*(xy - o.xy)) > obj.radius + o.radius + 0.03 for o in placed):
                obj.xy = xy
                placed.append(obj)
                break
    areas = np.array([style.floor_size**2] + [o.area for o in placed])
    counts = rng.multinomial(n, areas / areas.sum())
    pts = [np.column_stack([rng.uniform(-half, half, (counts[0], 2)), np.zeros(counts[0])])]
    nrm = [np.tile([0.0, 0.0, 1.0], (counts[0], 1))]
    labels = [np.zeros(counts[0], np.int32)]
    for obj, m in zip(placed, counts[1:]):
        if m == 0:
            continue
        p, nr, _ = stretched_surface(obj.parts, int(m), rng, obj.stretch)
        rot = random_rotation(rng, "z")
        p = (p @ rot.T) * obj.scale
        p[:, :2] += obj.xy
        p[:, 2] -= p[:, 2].min()
        pts.append(p)
        nrm.append(nr @ rot.T)
        labels.append(np.full(int(m), obj.label, np.int32))
    points = np.concatenate(pts)
    if style.noise > 0:
        points = points + rng.normal(0, style.noise, points.shape)
    return points.astype(np.float32), np.concatenate(nrm).astype(np.float32), np.concatenate(labels)
