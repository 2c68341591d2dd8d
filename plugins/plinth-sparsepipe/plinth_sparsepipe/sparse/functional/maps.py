"""Which kernel map (and output coordinates) an op at a given kernel/stride/dilation uses, through the tensor's cache.

Cache key: (tensor stride, kernel size, conv stride, dilation, kind). A transposed op with stride s on a tensor of
stride t uses the map of the strided op from stride t/s with inputs and outputs swapped, and outputs the cached
coordinates at stride t/s; it is a cache hit whenever that strided op ran on this batch with the same kernel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import kmap as km
from ..tensor import CoordinateCache, SparseTensor


@dataclass
class MapChoice:
    kmap: km.KernelMap
    coords: torch.Tensor
    stride: int
    cache: CoordinateCache


def _cached(cache: CoordinateCache, key: tuple, build):
    found = cache.kmaps.get(key)
    if found is not None:
        cache.hits += 1
        return found
    cache.misses += 1
    cache.kmaps[key] = found = build()
    return found


def _check_args(kernel_size: int, stride: int, dilation: int) -> None:
    for name, v in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def op_map(
    x: SparseTensor, kernel_size: int, stride: int = 1, dilation: int = 1, transposed: bool = False,
    submanifold: bool | None = None,
) -> MapChoice:
    """The kernel map, output coordinates, output stride and output cache of a conv/pool on `x`."""
    _check_args(kernel_size, stride, dilation)
    if submanifold is None:
        submanifold = stride == 1
    if submanifold and stride != 1:
        raise ValueError(f"a submanifold convolution keeps coordinates: stride must be 1, got {stride}")
    t, cache = x.stride, x.cache
    if stride == 1 and submanifold:
        key = (t, kernel_size, 1, dilation, "subm")
        kmap = _cached(cache, key, lambda: km.submanifold_map(x.coords, kernel_size, dilation, t))
        return MapChoice(kmap.transposed() if transposed else kmap, x.coords, t, cache)
    if stride == 1:
        if transposed:
            raise ValueError("a transposed convolution with stride 1 must be submanifold")
        kmap = km.generative_map(x.coords, kernel_size, dilation, t)  # new coordinates at the same stride: own cache
        new_cache = CoordinateCache()
        return MapChoice(kmap, kmap.out_coords, t, new_cache)
    if not transposed:
        key = (t, kernel_size, stride, dilation, "down")
        kmap = _cached(cache, key, lambda: km.downsample_map(x.coords, kernel_size, stride, dilation, t))
        coords = cache.coords.setdefault(t * stride, kmap.out_coords)
        return MapChoice(kmap, coords, t * stride, cache)
    if t % stride:
        raise ValueError(f"transposed stride {stride} does not divide the tensor stride {t}")
    fine = t // stride
    fine_coords = cache.coords.get(fine)
    if fine_coords is None:
        raise ValueError(
            f"a transposed convolution to stride {fine} needs that stride's coordinates: the input must come from "
            f"a strided conv or pool of the same batch (cache has strides {sorted(cache.coords)})"
        )
    key = (fine, kernel_size, stride, dilation, "down")
    kmap = _cached(cache, key, lambda: km.downsample_map(fine_coords, kernel_size, stride, dilation, fine))
    if kmap.n_out != len(x):
        raise ValueError(f"transposed convolution: {len(x)} input rows but the stride-{t} map has {kmap.n_out}")
    return MapChoice(kmap.transposed(), fine_coords, fine, cache)
