"""From a split on disk to the batches a step runner consumes, the same way for the trainer and the evaluator.

Every epoch's order is a permutation drawn from (seed, epoch) alone, padded to a multiple of the shard count and
dealt round-robin to shards (like torch's DistributedSampler), then cut into full batches. So the steps of an
epoch are the same on every rank, and a resumed run skips exactly the batches it already trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from plinth import ConfigError


def make_dataset(data: dict[str, Any], path: str | Path, input_kind: str, augment=None):
    """PointCloudDataset (sparse models) or DenseGridDataset (the dense baseline) over a split, from the `data`
    section a trainer config gives and a checkpoint records."""
    from ..data import DenseGridDataset, PointCloudDataset

    if input_kind == "dense":
        return DenseGridDataset(path, resolution=data["grid_resolution"], num_points=data["grid_points"],
                                normalize=data["normalize"], augment=augment, seed=data["seed"], precompute=True)
    return PointCloudDataset(path, voxel_size=data["voxel_size"], num_points=data["num_points"],
                             normalize=data["normalize"], features=tuple(data["features"]), augment=augment,
                             seed=data["seed"])


def in_channels(dataset, input_kind: str) -> int:
    return 1 if input_kind == "dense" else dataset.in_channels


def check_dataset(dataset, model_task: str, features: list[str], where: str) -> None:
    """The clear errors a run would otherwise hit mid-way: wrong task for the model, missing feature columns."""
    path = dataset.data.path
    if dataset.task != model_task:
        raise ConfigError(f"{where}: {path} is a {dataset.task} dataset but the model is for {model_task} "
                          f"({'sparse_unet' if dataset.task == 'segmentation' else 'a classifier'} fits it)")
    for name in ("normals", "colors"):
        if name in features and getattr(dataset.data, name) is None:
            raise ConfigError(f"{where}: features include '{name}' but {path} stores no {name}")
    if len(dataset) == 0:
        raise ConfigError(f"{where}: {path} holds no samples")


def collate_for(input_kind: str):
    from ..data import collate, dense_collate

    return dense_collate if input_kind == "dense" else collate


def as_batch(batch: dict[str, Any]) -> tuple[Any, torch.Tensor]:
    """A collated dict -> (input, target): labels [B] for classification, voxel labels [N] for segmentation."""
    return batch["input"], batch["labels"] if "labels" in batch else batch["voxel_labels"]


def shard_order(n: int, seed: int, epoch: int, shard: tuple[int, int]) -> np.ndarray:
    """Sample indices this shard visits in `epoch`."""
    index, count = shard
    order = np.random.default_rng([seed, epoch]).permutation(n)
    pad = (-n) % count
    if pad:
        order = np.concatenate([order, order[:pad]])
    return order[index::count]


def steps_per_epoch(n: int, shard_count: int, shard_batch: int) -> int:
    return (n + (-n) % shard_count) // shard_count // shard_batch


def epoch_batches(dataset, epoch: int, seed: int, shard: tuple[int, int], shard_batch: int, skip_steps: int,
                  input_kind: str, num_workers: int = 0) -> Iterator[tuple[Any, torch.Tensor]]:
    """The (input, target) batches of `epoch` for this shard, from step `skip_steps` on (full batches only)."""
    order = shard_order(len(dataset), seed, epoch, shard)
    steps = len(order) // shard_batch
    order = order[skip_steps * shard_batch: steps * shard_batch]
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, order.tolist()), batch_size=shard_batch, shuffle=False,
        collate_fn=collate_for(input_kind), num_workers=num_workers, drop_last=True)
    return (as_batch(b) for b in loader)
