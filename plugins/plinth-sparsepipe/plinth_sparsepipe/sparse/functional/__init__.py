"""Sparse ops on SparseTensor (modules in `..nn` wrap these): conv3d, pooling, global pooling, cat."""

from .conv import conv3d
from .pointwise import apply_feats, cat
from .pool import avg_pool3d, global_avg_pool, global_max_pool, max_pool3d

__all__ = ["apply_feats", "avg_pool3d", "cat", "conv3d", "global_avg_pool", "global_max_pool", "max_pool3d"]
