"""What the trainer iterates: a torch Dataset over a point-cloud split that yields voxelised samples, and the
collate that batches them into one `SparseTensor`.

Per sample, in order: random sample to `num_points` (None: keep every point) -> normalise into [0, 1]^3 ->
augment (training only) -> features -> voxelise (unique voxels; features averaged, or the first point's). Draws
come from `default_rng([seed, epoch, index])`: the same (seed, epoch, index) always gives the same sample, in any
worker; call `set_epoch(e)` each epoch (with non-persistent DataLoader workers, which copy the dataset per epoch).

Normalised and not augmented, voxel coordinates lie in [0, 1 / voxel_size) on each axis (0.02 -> the paper's 50^3:
points on the upper face go to the last voxel); rotation and scale may carry them beyond, negative included, which
the sparse engine accepts. With `normalize="none"` the voxel size is in the data's own units (e.g. metres).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import Augment
from .features import check_feature_names, feature_channels, point_features
from .normalization import normalize
from .sampling import random_sample
from .store import PointCloudSet, load_split
from .voxels import voxel_majority, voxelize


class SplitDataset(torch.utils.data.Dataset):
    """A torch Dataset over one split (a PointCloudSet or the path of a `.parquet` split), with an epoch counter
    for per-epoch random draws."""

    def __init__(self, source: PointCloudSet | str | Path):
        self.data = source if isinstance(source, PointCloudSet) else load_split(source)
        self.epoch = 0

    @property
    def task(self) -> str:
        return self.data.task

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)


class PointCloudDataset(SplitDataset):
    """Items: `coords` int32 [M, 3], `feats` float32 [M, C], `index`; classification adds `label` (int64);
    segmentation adds `voxel_labels` int64 [M] (majority of the voxel's labelled points, -1 if none),
    `point_labels` int64 [P] and `point_to_voxel` int64 [P] (row of `coords` each sampled point fell into)."""

    def __init__(self, source: PointCloudSet | str | Path, voxel_size: float = 0.02, num_points: int | None = 4096,
                 normalize: str = "unit_cube", features: tuple[str, ...] | list[str] = ("ones",),
                 augment: Augment | None = None, seed: int = 0, reduce: str = "mean"):
        super().__init__(source)
        check_feature_names(features)
        self.voxel_size, self.num_points, self.normalize = voxel_size, num_points, normalize
        self.features, self.augment, self.seed, self.reduce = tuple(features), augment, seed, reduce
        if self.task not in ("classification", "segmentation"):
            raise ValueError(f"{self.data.path}: unknown task '{self.task}'")

    @property
    def in_channels(self) -> int:
        """Feature channels per voxel: what the model's first layer takes."""
        return feature_channels(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        cloud = self.data[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.num_points is not None:
            cloud = cloud.take(random_sample(len(cloud), self.num_points, rng))
        cloud = cloud.with_points(normalize(cloud.points, self.normalize))
        if self.augment is not None:
            cloud = self.augment(cloud, rng)
        in_cube = self.normalize != "none" and self.augment is None  # points known to lie in [0, 1]^3
        grid = int(round(1 / self.voxel_size)) if in_cube else None
        vox = voxelize(cloud.points, self.voxel_size, point_features(cloud, self.features), self.reduce, grid)
        item: dict[str, Any] = {"coords": torch.from_numpy(vox.coords), "feats": torch.from_numpy(vox.feats),
                                "index": index}
        if self.task == "classification":
            item["label"] = torch.tensor(cloud.label, dtype=torch.int64)
        else:
            labels = cloud.point_labels.astype(np.int64)
            item["voxel_labels"] = torch.from_numpy(voxel_majority(labels, vox.point_to_voxel, len(vox.coords)))
            item["point_labels"] = torch.from_numpy(labels)
            item["point_to_voxel"] = torch.from_numpy(vox.point_to_voxel)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch of PointCloudDataset items -> {"input": SparseTensor (batch index = position), "index": [B], and
    "labels" [B] (classification) or "voxel_labels" [sum M], "point_labels" [sum P], "point_to_voxel" [sum P]
    (rows of the batched tensor), "point_batch" [sum P] (segmentation)}."""
    from plinth_sparsepipe.sparse import sparse_collate

    out: dict[str, Any] = {"input": sparse_collate([(it["coords"], it["feats"]) for it in items]),
                           "index": torch.tensor([it["index"] for it in items], dtype=torch.int64)}
    if "label" in items[0]:
        out["labels"] = torch.stack([it["label"] for it in items])
        return out
    rows = np.cumsum([0] + [len(it["coords"]) for it in items])
    out["voxel_labels"] = torch.cat([it["voxel_labels"] for it in items])
    out["point_labels"] = torch.cat([it["point_labels"] for it in items])
    out["point_to_voxel"] = torch.cat([it["point_to_voxel"] + int(r) for it, r in zip(items, rows)])
    out["point_batch"] = torch.cat([torch.full((len(it["point_labels"]),), b, dtype=torch.int64)
                                    for b, it in enumerate(items)])
    return out
