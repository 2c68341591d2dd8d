"""plinth's sparse 3D convolution engine (pure PyTorch by default; spconv and torchsparse as optional back ends).

Public API (a contract: the models, the `pointcloud` trainer and the `sparsepipe` strategy build on it)
------------------------------------------------------------------------------------------------------------
    from plinth_sparsepipe.sparse import SparseTensor, sparse_collate, check_backend, set_default_backend
    from plinth_sparsepipe.sparse import nn as spnn          # modules
    from plinth_sparsepipe.sparse import functional as spF   # the ops behind them

SparseTensor(coords, feats, stride=1, *, batch_size=None)
    coords int32 [N, 4] = (batch, x, y, z), in input-voxel units at every resolution (a tensor of stride s holds
    multiples of s); feats [N, C]; stride int. Rows of one cloud are contiguous and clouds are in batch order
    (sparse_collate and every op keep this). Coordinates are unique per cloud and lie in [-32768, 32767] minus the
    kernel's reach; batch indices in [0, 32768).
    .coords .feats .stride .batch_size .num_channels len(x)
    .replace(feats)           same coordinates, new features; shares the kernel-map cache
    .to(device, dtype=None)   moves (fresh cache on another device)
    .dense(spatial_shape=None, origin=(0,0,0), fill=0.) -> [B, C, X, Y, Z]
    SparseTensor.from_dense(dense, mask=None, stride=1)
    .to_tensors() -> (coords int32 [N,4], feats [N,C], stride int64 [1], offsets int64 [B+1]);
    SparseTensor.from_tensors(coords, feats, stride, offsets=None)   (kernel maps are rebuilt where it arrives)
    .cache                    CoordinateCache: coords per stride, kernel maps per (stride, kernel, conv stride,
                              dilation, kind), hit/miss counters
sparse_collate([(coords [Ni,3] int, feats [Ni,C]), ...], stride=1) -> SparseTensor (batch index = list position)

nn (torch.nn.Modules; SparseTensor in, SparseTensor out; global pools -> dense [B, C]):
    Conv3d(in, out, kernel_size=3, stride=1, dilation=1, bias=False, transposed=False, submanifold=None, backend=None)
        weight [k^3, in, out]; stride 1 = submanifold (submanifold=False: generative); stride s = strided to
        floor(c / (t*s)) * (t*s); transposed + stride s = back to the stride-t/s coordinates on the strided map
    MaxPool3d(kernel_size=2, stride=None, dilation=1), AvgPool3d(...)   (over active inputs only)
    GlobalMaxPool(), GlobalAvgPool()
    BatchNorm(C, ...), ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh, Dropout(p)   (torch's, on .feats)
    cat([a, b, ...])          channel concatenation of tensors with the same coordinates (U-Net skips)
functional: conv3d(x, weight, bias, kernel_size, stride, dilation, transposed, submanifold, backend),
    max_pool3d, avg_pool3d, global_max_pool, global_avg_pool, cat, apply_feats
Back ends: check_backend(name, device=None) raises plinth.ConfigError (unknown / not installed / wrong device);
    set_default_backend(name), use_backend(name) (context manager), default_backend(); names: torch, spconv,
    torchsparse. Every back end uses the same kernel maps, so outputs agree.

Dataflow, one function per op so a faster back end can replace one at a time:
    kmap.submanifold_map / downsample_map / generative_map   (kernel map)
    backends.<name>.conv(feats, weight, kmap)                (gather -> GEMM -> scatter)
"""

from plinth.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SparseTensor": "tensor",
        "CoordinateCache": "tensor",
        "sparse_collate": "collate",
        "check_backend": "backends",
        "set_default_backend": "backends",
        "default_backend": "backends",
        "use_backend": "backends",
        "BACKENDS": "backends",
        "cat": "functional",
    },
)
