"""A small sparse ResNet classifier (in the spirit of MinkowskiEngine's ResNet14): a 3^3 stem, stages of residual
basic blocks at halving resolutions (joined by 2^3 stride-2 convolutions), global pooling, one linear layer.

Blocks: stem, stage1, down2, stage2, ..., global_pool, head — a chain, so it pipelines like the VGG.
"""

from __future__ import annotations

from torch import nn

from ..sparse import nn as spnn
from .base import PointCloudModel
from .blocks import BasicBlock, ConvBNReLU, init_weights
from .options import SparseResNetOptions, scaled


class SparseResNet(PointCloudModel):
    def __init__(self, in_channels: int, num_classes: int, options: SparseResNetOptions | None = None):
        options = options or SparseResNetOptions()
        super().__init__(in_channels, num_classes, options)
        widths = [scaled(c, options.width) for c in options.channels]
        self.add_module("stem", ConvBNReLU(in_channels, widths[0], 3))
        cin = widths[0]
        for i, (cout, n) in enumerate(zip(widths, options.blocks), 1):
            if i > 1:
                self.add_module(f"down{i}", ConvBNReLU(cin, cout, 2, stride=2))
                cin = cout
            self.add_module(f"stage{i}", nn.Sequential(*[BasicBlock(cin if j == 0 else cout, cout) for j in range(n)]))
            cin = cout
        self.add_module("global_pool", spnn.GlobalMaxPool() if options.pool == "max" else spnn.GlobalAvgPool())
        self.add_module("head", nn.Sequential(nn.Dropout(options.dropout), nn.Linear(cin, num_classes)))
        init_weights(self)
