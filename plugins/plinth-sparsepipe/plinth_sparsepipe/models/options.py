"""Each model's options as a pydantic model: the `model` section of the `pointcloud` trainer's config and the
`options` part of a checkpoint's config.json, so a checkpoint rebuilds exactly the model it was trained as.

Pydantic only (no torch), so `plinth validate` checks a model section without importing torch. `width` multiplies
every channel count (convolutions and the classifier's hidden layers): 1.0 is the published architecture, smaller
values make CPU-sized versions of the same network (the depth, kernels and pooling never change).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plinth.components import Count


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: float = Field(1.0, gt=0, le=8, description="channel multiplier (1.0 = the published widths)")


class SparseVGGOptions(_Options):
    """Sparse VGG16-BN (SparsePipe): configuration D of 3^3 submanifold convs + BN + ReLU, 2^3 max pools,
    global max pool, Linear 512 -> hidden -> hidden -> classes."""

    name: Literal["sparse_vgg16_bn"] = "sparse_vgg16_bn"
    hidden: int = Field(4096, ge=1, description="classifier hidden units at width 1 (scaled by width)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout after each hidden classifier layer")


class DenseVGGOptions(SparseVGGOptions):
    """The paper's dense baseline: the same VGG16-BN with nn.Conv3d on a dense occupancy grid."""

    name: Literal["dense_vgg16_bn"] = "dense_vgg16_bn"  # type: ignore[assignment]


class SparseResNetOptions(_Options):
    """A small sparse ResNet classifier: stem, stages of residual blocks joined by 2^3 stride-2 convs, global pool,
    one linear layer."""

    name: Literal["sparse_resnet"] = "sparse_resnet"
    channels: tuple[Count, ...] = Field((32, 64, 128, 256), min_length=1, description="channels per stage (width 1)")
    blocks: tuple[Count, ...] = Field((1, 1, 1, 1), min_length=1, description="residual blocks per stage")
    pool: Literal["max", "avg"] = Field("max", description="global pooling before the linear layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the linear layer")

    @model_validator(mode="after")
    def _same_length(self) -> "SparseResNetOptions":
        if len(self.channels) != len(self.blocks):
            raise ValueError(f"channels {list(self.channels)} and blocks {list(self.blocks)} need one entry per stage")
        return self


class SparseUNetOptions(_Options):
    """A MinkUNet-style sparse U-Net for per-voxel segmentation: strided-conv encoder, transposed-conv decoder,
    skip connections concatenated at each resolution."""

    name: Literal["sparse_unet"] = "sparse_unet"
    channels: tuple[Count, ...] = Field((32, 64, 128, 256), min_length=2,
                                      description="encoder channels per resolution, finest first (width 1)")
    decoder: tuple[Count, ...] = Field((128, 96, 96), min_length=1,
                                     description="decoder channels, coarsest first; one fewer than `channels`")
    blocks: int = Field(1, ge=1, description="residual blocks per encoder and decoder level")

    @model_validator(mode="after")
    def _levels(self) -> "SparseUNetOptions":
        if len(self.decoder) != len(self.channels) - 1:
            raise ValueError(f"decoder {list(self.decoder)} needs {len(self.channels) - 1} entries "
                             f"(one per downsampling of channels {list(self.channels)})")
        return self


ModelOptions = Annotated[
    Union[SparseVGGOptions, DenseVGGOptions, SparseResNetOptions, SparseUNetOptions], Field(discriminator="name")
]
MODEL_NAMES = ("sparse_vgg16_bn", "sparse_resnet", "sparse_unet", "dense_vgg16_bn")
SEGMENTATION_MODELS = ("sparse_unet",)
DENSE_MODELS = ("dense_vgg16_bn",)
