"""The `pointcloud` trainer's parameters. Pure pydantic (no torch): `plinth validate` checks all of it, the
sparse back end included (installed, runs on the chosen device)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from plinth.components import ComponentConfig

from ..data.augment import Augment
from ..data.features import FEATURES
from ..models.options import ModelOptions, SparseVGGOptions


class PointcloudTrainerConfig(ComponentConfig):
    """Classification (sparse VGG16-BN, sparse ResNet, dense VGG16-BN) or segmentation (sparse U-Net)."""

    model: ModelOptions = Field(default_factory=SparseVGGOptions,
                                description="the network: {name = \"sparse_vgg16_bn\" | \"sparse_resnet\" | "
                                            "\"sparse_unet\" | \"dense_vgg16_bn\", width = 1.0, ...}")
    # -- inputs -------------------------------------------------------------------------------------------------
    voxel_size: float = Field(0.02, gt=0, le=1, description="voxel edge in unit-cube units (0.02: the paper's 50^3)")
    num_points: int | None = Field(4096, ge=1, description="points sampled per cloud before voxelising (None: all)")
    normalize: Literal["unit_cube", "per_axis"] = Field("unit_cube", description="how clouds are fitted to [0, 1]^3")
    features: list[str] = Field(default_factory=lambda: ["ones"], description="per-voxel input features, in order: "
                                "ones, xyz, normals, colors")
    augment: Augment | bool = Field(True, description="training augmentation: true (defaults), false, or a table")
    grid_resolution: int = Field(32, ge=2, description="dense baseline: occupancy grid side (the paper's 32)")
    grid_points: int = Field(2048, ge=1, description="dense baseline: farthest-point samples per cloud")
    ignore_label: int = Field(-1, description="segmentation: label excluded from loss and scores")
    # -- optimisation -------------------------------------------------------------------------------------------
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="samples per optimizer step over all processes")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = Field(0.01, gt=0, description="peak learning rate (the paper's 0.01 with SGD)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = False
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    weight_decay: float = Field(5e-4, ge=0)
    lr_schedule: Literal["poly", "step", "constant"] = Field(
        "poly", description="poly: lr * (1 - step/total)^poly_power (the paper's); step: lr * step_gamma^(epoch // "
                            "step_epochs)")
    poly_power: float = Field(2.0, gt=0)
    step_epochs: int = Field(30, ge=1, description="step schedule: epochs between decays")
    step_gamma: float = Field(0.1, gt=0, le=1)
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 over this many steps")
    # -- running ------------------------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
    backend: str = Field("torch", description="sparse convolution back end: torch, spconv, torchsparse")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process (None: torch's default)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0: at the end of each epoch")
    keep_checkpoints: int = Field(2, ge=1, description="complete checkpoints kept in the work folder")
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl lines")

    @field_validator("features")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in FEATURES]
        if unknown or not names:
            raise ValueError(f"unknown feature(s) {unknown or 'none given'}; choose from {', '.join(FEATURES)}")
        return names

    @field_validator("backend")
    @classmethod
    def _backend_usable(cls, name: str, info: ValidationInfo) -> str:
        from plinth.errors import ConfigError

        from ..sparse.backends import check_backend

        device = info.data.get("device", "auto")
        try:
            check_backend(name, None if device == "auto" else device)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _grid_fits_the_dense_vgg(self) -> "PointcloudTrainerConfig":
        if self.model.name == "dense_vgg16_bn" and self.grid_resolution < 32:
            raise ValueError(f"grid_resolution = {self.grid_resolution}: the dense VGG16-BN halves the grid five "
                             "times, so it needs at least 32")
        return self

    def augmentation(self) -> Augment | None:
        if self.augment is True:
            return Augment()
        return self.augment or None

    def data_config(self) -> dict:
        """How inputs are made from a split: recorded in the checkpoint so the evaluator makes them the same way."""
        return {"voxel_size": self.voxel_size, "num_points": self.num_points, "normalize": self.normalize,
                "features": list(self.features), "grid_resolution": self.grid_resolution,
                "grid_points": self.grid_points, "ignore_label": self.ignore_label, "seed": self.seed}
