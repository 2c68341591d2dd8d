"""Training-time augmentation: point dropout, rotation about one axis, scale, jitter — in that order, every draw
from the generator it is given, so a (seed, epoch, index) triple always yields the same sample.

Rotation and scale act about `center` (0.5 = the middle of the unit cube the clouds are normalised into);
normals turn with the points. It is a pydantic model so a trainer's config can embed it as a section.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from plinth.components import PositiveRange

from .cloud import PointCloud

AXES = {"x": 0, "y": 1, "z": 2}


class Augment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rotate_axis: Literal["x", "y", "z"] | None = Field("z", description="axis of the random rotation (None: none)")
    rotate_degrees: float = Field(180.0, ge=0, le=180, description="angle drawn from U(-d, d) degrees")
    scale: PositiveRange = Field((0.8, 1.2), description="isotropic scale drawn from U(lo, hi)")
    jitter_sigma: float = Field(0.01, ge=0, description="Gaussian noise per coordinate (unit-cube units)")
    jitter_clip: float = Field(0.05, ge=0, description="noise clipped to (-clip, clip)")
    dropout: float = Field(0.0, ge=0, lt=1, description="drop a fraction U(0, dropout) of the points")
    center: float = Field(0.5, description="rotation and scale act about (c, c, c)")

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if self.dropout > 0 and len(cloud) > 1:
            keep = rng.random(len(cloud)) >= rng.uniform(0, self.dropout)
            if keep.any():
                cloud = cloud.take(keep)
        pts = cloud.points.astype(np.float64) - self.center
        normals = cloud.normals
        if self.rotate_axis is not None and self.rotate_degrees > 0:
            rot = rotation_about(AXES[self.rotate_axis], np.radians(rng.uniform(-self.rotate_degrees,
                                                                                self.rotate_degrees)))
            pts = pts @ rot.T
            if normals is not None:
                normals = (normals @ rot.T).astype(np.float32)
        lo, hi = self.scale
        pts = pts * rng.uniform(lo, hi) + self.center
        if self.jitter_sigma > 0:
            pts += np.clip(rng.normal(0, self.jitter_sigma, pts.shape), -self.jitter_clip, self.jitter_clip)
        return cloud.with_points(pts.astype(np.float32), normals)


def rotation_about(axis: int, angle: float) -> np.ndarray:
    """The 3x3 rotation by `angle` radians about coordinate axis 0, 1 or 2 (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot
