"""Feature-wise modules (batch norm, activations, dropout): the torch module applied to `.feats`, coordinates kept.

Each is a subclass of the torch module it names, so its parameters, state-dict keys and arguments are torch's.
Batch norm statistics are over all active voxels of the batch (MinkowskiEngine/torchsparse semantics).
"""

from __future__ import annotations

from torch import nn


class _OnFeatures:
    def forward(self, x):
        return x.replace(super().forward(x.feats))


class BatchNorm(_OnFeatures, nn.BatchNorm1d):
    pass


class ReLU(_OnFeatures, nn.ReLU):
    pass


class LeakyReLU(_OnFeatures, nn.LeakyReLU):
    pass


class ELU(_OnFeatures, nn.ELU):
    pass


class GELU(_OnFeatures, nn.GELU):
    pass


class SiLU(_OnFeatures, nn.SiLU):
    pass


class Sigmoid(_OnFeatures, nn.Sigmoid):
    pass


class Tanh(_OnFeatures, nn.Tanh):
    pass


class Dropout(_OnFeatures, nn.Dropout):
    pass

