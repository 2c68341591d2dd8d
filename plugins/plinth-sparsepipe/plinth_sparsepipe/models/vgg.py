"""Sparse VGG16-BN, as SparsePipe's code builds it on MinkowskiEngine (BestSonny/SparsePipedream, vgg_mink.py).

Configuration "D": 13 convolutions in five blocks, 3^3 submanifold convolutions without bias + BN + ReLU, a 2^3
stride-2 max pool after each block, a global max pool, then Linear 512 -> 4096 -> 4096 -> classes with ReLU and
dropout 0.5. Kaiming-normal (fan_out) convolutions; the linear layers keep torch's default initialisation, as
the paper's code does. Blocks (the pipeline's cut points): conv1_1, conv1_2, pool1, ..., conv5_3, pool5,
global_pool, fc1, fc2, classifier.
"""

from __future__ import annotations

from torch import nn

from ..sparse import nn as spnn
from .base import PointCloudModel
from .blocks import ConvBNReLU, init_weights
from .options import SparseVGGOptions, scaled

CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg_layers(cfg: list, in_channels: int, width: float, conv, pool) -> tuple[list[tuple[str, nn.Module]], int]:
    """Named (conv<block>_<i> / pool<block>) layers of a VGG configuration and the last channel count;
    `conv(cin, cout)` and `pool()` make the sparse or the dense layers."""
    layers, block, index, cin = [], 1, 1, in_channels
    for v in cfg:
        if v == "M":
            layers.append((f"pool{block}", pool()))
            block, index = block + 1, 1
        else:
            cout = scaled(v, width)
            layers.append((f"conv{block}_{index}", conv(cin, cout)))
            cin, index = cout, index + 1
    return layers, cin


def classifier_layers(cin: int, hidden: int, num_classes: int, dropout: float) -> list[tuple[str, nn.Module]]:
    return [
        ("fc1", nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))),
        ("fc2", nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))),
        ("classifier", nn.Linear(hidden, num_classes)),
    ]


class SparseVGG16BN(PointCloudModel):
    def __init__(self, in_channels: int, num_classes: int, options: SparseVGGOptions | None = None):
        options = options or SparseVGGOptions()
        super().__init__(in_channels, num_classes, options)
        layers, cout = vgg_layers(CFG_D, in_channels, options.width, lambda a, b: ConvBNReLU(a, b, 3),
                                  lambda: spnn.MaxPool3d(2, 2))
        layers.append(("global_pool", spnn.GlobalMaxPool()))
        layers += classifier_layers(cout, scaled(options.hidden, options.width), num_classes, options.dropout)
        for name, module in layers:
            self.add_module(name, module)
        init_weights(self)
