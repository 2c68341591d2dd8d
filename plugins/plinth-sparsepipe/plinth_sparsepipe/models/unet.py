"""A MinkUNet-style sparse U-Net for per-voxel (and, through point->voxel maps, per-point) segmentation.

Encoder: a 3^3 stem + residual blocks at stride 1, then per level a 2^3 stride-2 conv + residual blocks.
Decoder, coarsest first: a 2^3 transposed conv back onto the finer level's coordinates (the strided conv's
kernel map, roles swapped), channel concatenation with that level's encoder output (the skip), residual blocks.
Head: a 1^3 conv to per-voxel class logits; the output is a SparseTensor at the input's coordinates.

Blocks in forward order: stem, enc1..encL, dec<L>..dec1, head. The skips make it a graph, not a chain:
`pipelinable = False`.
"""

from __future__ import annotations

from torch import nn

from ..sparse import nn as spnn
from .base import PointCloudModel
from .blocks import BasicBlock, ConvBNReLU, init_weights
from .options import SparseUNetOptions, scaled


def _residual(cin: int, cout: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[BasicBlock(cin if j == 0 else cout, cout) for j in range(n)])


class Encoder(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, stride: int):
        super().__init__()
        self.entry = ConvBNReLU(cin, cout, 3 if stride == 1 else 2, stride=stride)
        self.blocks = _residual(cout, cout, n)

    def forward(self, x):
        return self.blocks(self.entry(x))


class Decoder(nn.Module):
    """Upsample x onto skip's coordinates, concatenate skip's channels, refine."""

    def __init__(self, cin: int, cskip: int, cout: int, n: int):
        super().__init__()
        self.up = ConvBNReLU(cin, cout, 2, stride=2, transposed=True)
        self.blocks = _residual(cout + cskip, cout, n)

    def forward(self, x, skip):
        return self.blocks(spnn.cat([self.up(x), skip]))


class SparseUNet(PointCloudModel):
    task = "segmentation"
    pipelinable = False

    def __init__(self, in_channels: int, num_classes: int, options: SparseUNetOptions | None = None):
        options = options or SparseUNetOptions()
        super().__init__(in_channels, num_classes, options)
        enc = [scaled(c, options.width) for c in options.channels]
        dec = [scaled(c, options.width) for c in options.decoder]
        self.levels = len(enc) - 1
        self.add_module("stem", Encoder(in_channels, enc[0], options.blocks, stride=1))
        for i in range(1, len(enc)):
            self.add_module(f"enc{i}", Encoder(enc[i - 1], enc[i], options.blocks, stride=2))
        cin = enc[-1]
        for k, i in enumerate(range(self.levels, 0, -1)):  # dec<L> joins enc<L-1> (enc0 = stem)
            self.add_module(f"dec{i}", Decoder(cin, enc[i - 1], dec[k], options.blocks))
            cin = dec[k]
        self.add_module("head", spnn.Conv3d(cin, num_classes, 1, bias=True))
        init_weights(self)

    def forward(self, x):
        skips = [self.stem(x)]
        for i in range(1, self.levels + 1):
            skips.append(getattr(self, f"enc{i}")(skips[-1]))
        y = skips.pop()
        for i in range(self.levels, 0, -1):
            y = getattr(self, f"dec{i}")(y, skips.pop())
        return self.head(y)
