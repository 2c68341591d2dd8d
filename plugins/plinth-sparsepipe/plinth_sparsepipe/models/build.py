"""Model names -> classes, and rebuilding a model from the JSON config a checkpoint carries."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from .options import ModelOptions

CLASSES = {
    "sparse_vgg16_bn": "plinth_sparsepipe.models.vgg:SparseVGG16BN",
    "dense_vgg16_bn": "plinth_sparsepipe.models.dense_vgg:DenseVGG16BN",
    "sparse_resnet": "plinth_sparsepipe.models.resnet:SparseResNet",
    "sparse_unet": "plinth_sparsepipe.models.unet:SparseUNet",
}


def model_class(name: str) -> type:
    import importlib

    if name not in CLASSES:
        raise ValueError(f"unknown model '{name}'; models are {', '.join(CLASSES)}")
    module, cls = CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def parse_options(options: Any) -> Any:
    """A dict (e.g. {"name": "sparse_resnet", "width": 0.5}) or options object -> the validated options object."""
    return TypeAdapter(ModelOptions).validate_python(options)


def build_model(options: Any, in_channels: int, num_classes: int):
    """A freshly initialised model (seed torch first for a reproducible init)."""
    opts = parse_options(options)
    return model_class(opts.name)(in_channels, num_classes, opts)


def model_from_config(config: dict[str, Any]):
    """Inverse of `model.config()`."""
    return build_model(config["options"], int(config["in_channels"]), int(config["num_classes"]))
