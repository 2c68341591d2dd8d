"""Building blocks shared by the sparse models: conv + BN + ReLU, and the residual basic block."""

from __future__ import annotations

from torch import nn

from ..sparse import nn as spnn


class ConvBNReLU(nn.Module):
    """Sparse Conv3d (no bias: BN follows) -> BatchNorm -> ReLU. Stride 1: submanifold; stride 2: downsampling;
    transposed: upsampling onto the coordinates the matching strided conv came from."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, transposed: bool = False):
        super().__init__()
        self.conv = spnn.Conv3d(cin, cout, kernel_size, stride=stride, transposed=transposed)
        self.bn = spnn.BatchNorm(cout)
        self.relu = spnn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block on a sparse tensor: two 3^3 submanifold convs with BN, plus the input (projected by a
    1^3 conv + BN when the channel count changes), then ReLU. Coordinates never change inside the block."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = spnn.Conv3d(cin, cout, 3)
        self.bn1 = spnn.BatchNorm(cout)
        self.conv2 = spnn.Conv3d(cout, cout, 3)
        self.bn2 = spnn.BatchNorm(cout)
        self.relu = spnn.ReLU(inplace=True)
        self.project = None
        if cin != cout:
            self.project = nn.Sequential(spnn.Conv3d(cin, cout, 1), spnn.BatchNorm(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.project is None else self.project(x)
        return self.relu(out.replace(out.feats + skip.feats))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, BN weight 1 and bias 0 (the paper's and torchvision's VGG).

    A sparse weight is [k^3, Cin, Cout], so fan_out = k^3 * Cout, as for a dense Conv3d [Cout, Cin, k, k, k]."""
    import math

    for m in model.modules():
        if isinstance(m, spnn.Conv3d):
            std = math.sqrt(2.0 / (m.kernel_volume * m.out_channels))
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
