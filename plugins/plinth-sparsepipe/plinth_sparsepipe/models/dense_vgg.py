"""The paper's dense baseline: 3D VGG16-BN with nn.Conv3d on an occupancy grid (SparsePipe: 32^3 from 2048
farthest-point-sampled points; BestSonny/SparsePipedream, dense_point_cloud/models/vgg16/vgg_3d.py).

The same configuration D as the sparse model: 3^3 Conv3d (padding 1, with bias as in the paper's code) + BN +
ReLU, 2^3 max pools (32^3 -> 1^3 after five), adaptive average pool to 1^3, Linear 512 -> 4096 -> 4096 ->
classes. Initialised exactly as the sparse VGG16-BN (Kaiming-normal fan_out convolutions, BN 1/0, torch's default
linear layers), so the two differ only in the convolution: torchvision's N(0, 0.01) linear weights, which the
paper's dense code uses, left this narrow CPU-width baseline at chance for 8 epochs in the example. At width 1 it
is far too slow for a CPU (13 dense 3^3 convolutions over up to 32^3 x 512); `width` scales it down.
"""

from __future__ import annotations

from torch import nn

from .base import PointCloudModel
from .blocks import init_weights
from .options import DenseVGGOptions, scaled
from .vgg import CFG_D, classifier_layers, vgg_layers


class DenseConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)


class GlobalAvgPool3d(nn.Module):
    """[B, C, X, Y, Z] -> [B, C] (adaptive average pool to 1^3, flattened)."""

    def forward(self, x):
        return x.mean(dim=(2, 3, 4))


class DenseVGG16BN(PointCloudModel):
    input_kind = "dense"

    def __init__(self, in_channels: int, num_classes: int, options: DenseVGGOptions | None = None):
        options = options or DenseVGGOptions()
        super().__init__(in_channels, num_classes, options)
        layers, cout = vgg_layers(CFG_D, in_channels, options.width, DenseConvBNReLU, lambda: nn.MaxPool3d(2, 2))
        layers.append(("global_pool", GlobalAvgPool3d()))
        layers += classifier_layers(cout, scaled(options.hidden, options.width), num_classes, options.dropout)
        for name, module in layers:
            self.add_module(name, module)
        init_weights(self)
