"""The `shapes` (classification) and `scenes` (segmentation) generators: licence-clean procedural datasets of
any size, deterministic per seed. Sample i of a split draws from `numpy.random.default_rng([seed, split, i])`,
so a larger set extends a smaller one and the result depends on nothing but the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from plinth.components import PositiveRange
from plinth.context import StageContext

from .cloud import PointCloud
from .generator_base import SPLITS, CachedConfig, PointCloudGenerator, write_splits
from .scenes import SceneStyle, make_scene, scene_class_names
from .shapes import SHAPE_CLASSES, ShapeStyle, make_shape

SCENE_DEFAULT_CLASSES = ["sphere", "box", "cylinder", "cone", "torus", "pyramid"]


def _check_classes(classes: list[str]) -> None:
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if unknown:
        raise ValueError(f"unknown shape class(es) {unknown}; choose from {', '.join(SHAPE_CLASSES)}")
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and not empty, got {classes}")


class ShapesConfig(CachedConfig):
    classes: list[str] = Field(default_factory=lambda: list(SHAPE_CLASSES), description="shape classes, in label order")
    train_per_class: int = Field(100, ge=1, description="training samples per class")
    test_per_class: int = Field(25, ge=1, description="test samples per class")
    num_points: int = Field(2048, ge=16, description="surface points per sample")
    normals: bool = Field(False, description="store unit normals too")
    seed: int = 0
    rotation: Literal["none", "z", "so3"] = Field("z", description="random pose: none, about z (upright), any")
    scale: PositiveRange = Field((0.5, 1.5), description="uniform scale drawn from U(lo, hi)")
    anisotropy: float = Field(0.2, ge=0, lt=1, description="each axis stretched by U(1-a, 1+a)")
    occlusion: float = Field(0.5, ge=0, le=1, description="probability of a cut by a random half-space")
    occlusion_max: float = Field(0.3, ge=0, lt=0.9, description="a cut removes U(0.05, max) of the surface")
    noise: float = Field(0.005, ge=0, description="Gaussian sigma per coordinate (a shape is about 1 across)")

    @model_validator(mode="after")
    def _check(self) -> "ShapesConfig":
        _check_classes(self.classes)
        return self


class ShapesGenerator(PointCloudGenerator):
    """Procedural shapes for classification: primitives and compositions with random pose, scale, anisotropy,
    partial occlusion and noise, sampled uniformly by surface area."""

    Config = ShapesConfig
    component = "shapes"
    task = "classification"

    def build(self, folder: Path, ctx: StageContext) -> dict[str, Any]:
        c = self.config
        style = ShapeStyle(rotation=c.rotation, scale=tuple(c.scale), anisotropy=c.anisotropy, occlusion=c.occlusion,
                           occlusion_max=c.occlusion_max, noise=c.noise)

        def clouds(split_id: int, split: str, n: int):
            for i in range(n):
                label = i % len(c.classes)
                pts, nrm = make_shape(c.classes[label], c.num_points, np.random.default_rng([c.seed, split_id, i]),
                                      style)
                yield PointCloud(pts, nrm if c.normals else None, label=label, source=f"shapes/{split}/{i}")

        sizes = {"train": c.train_per_class * len(c.classes), "test": c.test_per_class * len(c.classes)}
        fields = ("normals",) if c.normals else ()
        splits = write_splits(folder, ctx, self.task, c.classes, fields,
                              {s: (sizes[s], clouds(k, s, sizes[s])) for k, s in enumerate(SPLITS)})
        return {"task": self.task, "classes": c.classes, "fields": ["points", *fields], "splits": splits}


class ScenesConfig(CachedConfig):
    classes: list[str] = Field(default_factory=lambda: list(SCENE_DEFAULT_CLASSES),
                               description="object classes; labels are 0 = floor, then these in order")
    train_size: int = Field(200, ge=1, description="training scenes")
    test_size: int = Field(50, ge=1, description="test scenes")
    num_points: int = Field(8192, ge=64, description="points per scene")
    objects: tuple[int, int] = Field((3, 6), description="objects per scene, U{lo..hi} (fewer when they do not fit)")
    floor_size: float = Field(2.5, gt=0, description="side of the square floor")
    object_scale: PositiveRange = Field((0.5, 0.9), description="object size (canonical shapes are ~1 across)")
    anisotropy: float = Field(0.2, ge=0, lt=1)
    noise: float = Field(0.003, ge=0)
    normals: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "ScenesConfig":
        _check_classes(self.classes)
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"objects = {list(self.objects)}: need 1 <= lo <= hi")
        return self


class ScenesGenerator(PointCloudGenerator):
    """Procedural scenes for segmentation: labelled shapes standing on a floor (label 0)."""

    Config = ScenesConfig
    component = "scenes"
    task = "segmentation"

    def build(self, folder: Path, ctx: StageContext) -> dict[str, Any]:
        c = self.config
        style = SceneStyle(objects=tuple(c.objects), floor_size=c.floor_size, object_scale=tuple(c.object_scale),
                           anisotropy=c.anisotropy, noise=c.noise)

        def clouds(split_id: int, split: str, n: int):
            for i in range(n):
                pts, nrm, lab = make_scene(c.num_points, c.classes, np.random.default_rng([c.seed, split_id, i]), style)
                yield PointCloud(pts, nrm if c.normals else None, point_labels=lab, source=f"scenes/{split}/{i}")

        sizes = {"train": c.train_size, "test": c.test_size}
        fields = ("normals",) if c.normals else ()
        names = scene_class_names(c.classes)
        splits = write_splits(folder, ctx, self.task, names, fields,
                              {s: (sizes[s], clouds(k, s, sizes[s])) for k, s in enumerate(SPLITS)})
        return {"task": self.task, "classes": names, "ignore_label": -1, "fields": ["points", *fields],
                "splits": splits}
