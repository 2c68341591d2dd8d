"""Loss and step metrics per task. Classification: cross-entropy on logits [B, classes]. Segmentation:
cross-entropy on the per-voxel logits of the output SparseTensor, skipping `ignore_label` voxels."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F


def logits_of(output: Any) -> torch.Tensor:
    """Dense logits of a model output (the features of a SparseTensor for segmentation)."""
    return output.feats if hasattr(output, "feats") else output


def loss_function(task: str, ignore_label: int = -1) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return lambda output, target: F.cross_entropy(output, target)

    def segmentation_loss(output: Any, target: torch.Tensor) -> torch.Tensor:
        logits = logits_of(output)
        if not bool((target != ignore_label).any()):  # nothing labelled: a zero that still reaches every weight
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=ignore_label)

    return segmentation_loss


def metrics_function(ignore_label: int = -1) -> Callable[[Any, torch.Tensor], dict[str, float]]:
    """(output, target) -> {"correct", "count"} over samples (classification) or labelled voxels."""

    def sums(output: Any, target: torch.Tensor) -> dict[str, float]:
        pred = logits_of(output).argmax(1)
        keep = target != ignore_label
        return {"correct": float((pred[keep] == target[keep]).sum()), "count": float(keep.sum())}

    return sums
