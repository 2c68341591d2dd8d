"""What every point-cloud model exposes: its named blocks in forward order (part 2 profiles them and cuts a chain
of them into pipeline stages), a JSON-able config that rebuilds it, and what it takes and returns.

A *chain* model's forward is the composition of its blocks in order, each taking the previous block's output
(SparseTensor between sparse blocks; the global pool turns it into a dense [B, C] tensor for the head). A model
whose blocks are not a chain (the U-Net's skips) sets `pipelinable = False`; its `blocks()` still lists them in
the order its forward runs them, for profiling.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class PointCloudModel(nn.Module):
    """Base of the models. Subclasses add their blocks with `add_module` in forward order (chain models) and set
    the class attributes."""

    #: "classification" (output: logits [B, classes]) or "segmentation" (output: SparseTensor of per-voxel logits)
    task: ClassVar[str] = "classification"
    #: "sparse" (input: SparseTensor) or "dense" (input: float [B, C, X, Y, Z])
    input_kind: ClassVar[str] = "sparse"
    #: True when forward is the composition of `blocks()` in order, so contiguous block ranges are stages
    pipelinable: ClassVar[bool] = True

    def __init__(self, in_channels: int, num_classes: int, options: Any):
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"{type(self).__name__}: need in_channels >= 1 and num_classes >= 1, "
                             f"got {in_channels} and {num_classes}")
        self.in_channels, self.num_classes, self.options = in_channels, num_classes, options

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """(name, module) in forward order; names are unique and are the state-dict prefixes."""
        return list(self.named_children())

    def config(self) -> dict[str, Any]:
        """JSON-able: `build_model(model.config())` rebuilds this architecture (weights come separately)."""
        return {"name": self.options.name, "in_channels": self.in_channels, "num_classes": self.num_classes,
                "options": self.options.model_dump(mode="json")}

    def forward(self, x):  # noqa: D102 - chain models; others override
        for _, block in self.blocks():
            x = block(x)
        return x
