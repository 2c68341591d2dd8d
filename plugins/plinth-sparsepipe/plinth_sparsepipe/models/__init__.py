"""Point-cloud models for plinth-sparsepipe: sparse VGG16-BN (the paper's), a small sparse ResNet, a MinkUNet-style
sparse U-Net for segmentation, and the paper's dense 3D VGG16-BN baseline.

    from plinth_sparsepipe.models import build_model, model_from_config
    model = build_model({"name": "sparse_vgg16_bn", "width": 0.25}, in_channels=1, num_classes=13)
    model.blocks()        # [(name, module), ...] in forward order: what part 2 profiles and cuts into stages
    model.pipelinable     # False for the U-Net (skips), True for the chains
    model.config()        # JSON-able; model_from_config(model.config()) rebuilds the architecture
    model.task, model.input_kind    # "classification" | "segmentation", "sparse" | "dense"

Checkpoints (safetensors weights + config.json): `save_checkpoint(folder, model, **extra)`,
`load_checkpoint(folder) -> (model, config)`. Options (pydantic, no torch): `options.ModelOptions`.
"""

from plinth.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "build_model": "build", "model_from_config": "build", "model_class": "build", "parse_options": "build",
        "ModelOptions": "options", "SparseVGGOptions": "options", "DenseVGGOptions": "options",
        "SparseResNetOptions": "options", "SparseUNetOptions": "options", "MODEL_NAMES": "options",
        "PointCloudModel": "base",
        "SparseVGG16BN": "vgg", "DenseVGG16BN": "dense_vgg", "SparseResNet": "resnet", "SparseUNet": "unet",
        "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "CHECKPOINT_SCHEMA": "checkpoint",
    },
)
