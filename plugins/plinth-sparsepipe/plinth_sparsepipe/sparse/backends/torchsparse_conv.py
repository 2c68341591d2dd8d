"""The `torchsparse` back end (CUDA): torchsparse's gather-GEMM-scatter kernels on plinth's kernel maps.

UNTESTED HERE: torchsparse is not on PyPI and needs CUDA; this adapter was written from torchsparse's public source
(v1.4 `ConvolutionFunction`; v2.x `GatherScatterConvolutionFuntion`, its "conv_mode 0" path) and is guarded by
import. tests/sparsepipe/test_sparse_backends.py compares it with the `torch` back end where it is installed.

torchsparse's pair list is int32 [P, 2] = (input row, output row), offset-major, with counts per offset. Its CUDA
kernels treat the centre offset of an odd kernel as the identity whenever n_in == n_out (a plain matmul, the
centre pairs skipped); plinth's maps say exactly when that holds (`identity == K // 2`), so any other map with
n_in == n_out and an odd kernel runs on the `torch` back end instead of being computed wrongly.
"""

from __future__ import annotations

import torch

from ..kmap import KernelMap
from . import torch_conv


def nbmaps(kmap: KernelMap) -> tuple[torch.Tensor, torch.Tensor]:
    """(int32 [P, 2] (input row, output row) offset-major with identity pairs written out, int32 [K] counts)."""
    cached = getattr(kmap, "_torchsparse", None)
    if cached is not None:
        return cached
    device = kmap.in_idx.device
    pieces = []
    for k, (start, size) in enumerate(zip(kmap.starts, kmap.sizes)):
        if k == kmap.identity:
            eye = torch.arange(size, device=device)
            pieces.append(torch.stack([eye, eye], 1))
        elif size:
            pieces.append(torch.stack([kmap.in_idx[start:start + size], kmap.out_idx[start:start + size]], 1))
    maps = torch.cat(pieces).to(torch.int32).contiguous() if pieces else torch.zeros(0, 2, dtype=torch.int32)
    kmap._torchsparse = (maps, torch.tensor(kmap.sizes, dtype=torch.int32))
    return kmap._torchsparse


def _centre_assumption_holds(kmap: KernelMap) -> bool:
    K = kmap.kernel_volume
    if K % 2 == 0 or kmap.n_in != kmap.n_out:
        return True
    return kmap.identity == K // 2


def conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats [n_in, Cin] (CUDA), weight [K, Cin, Cout] -> [n_out, Cout]."""
    if feats.device.type != "cuda":
        raise RuntimeError("sparse back end 'torchsparse' runs on CUDA only; use 'torch' or 'spconv' on the CPU")
    if not _centre_assumption_holds(kmap):
        return torch_conv.conv(feats, weight, kmap)
    import torchsparse

    maps, sizes = nbmaps(kmap)
    maps = maps.to(feats.device)
    version = getattr(torchsparse, "__version__", "0")
    if version.startswith("1."):
        from torchsparse.nn.functional.conv import ConvolutionFunction

        return ConvolutionFunction.apply(feats, weight, maps, sizes, (kmap.n_in, kmap.n_out), False)
    if version.startswith("2."):
        from torchsparse.nn.functional.conv.func.gather_scatter import GatherScatterConvolutionFuntion

        empty = torch.empty(0, dtype=torch.int32, device=feats.device)
        kmap_dict = {"nbmaps": maps, "nbsizes": sizes, "sizes": (kmap.n_in, kmap.n_out),
                     "input_mask": empty, "output_mask": empty}
        config = {"epsilon": 0.0, "mm_thresh": 0}
        benchmark = torchsparse.backends.benchmark
        torchsparse.backends.benchmark = False  # conv_mode 0: plain per-offset gather-GEMM-scatter, no masks
        try:
            return GatherScatterConvolutionFuntion.apply(feats, weight, kmap_dict, config, False)
        finally:
            torchsparse.backends.benchmark = benchmark
    raise RuntimeError(f"torchsparse {version}: no adapter for this version (supported: 1.4.x, 2.x)")
