"""The `spconv` back end: spconv 2.x's compiled gather-GEMM-scatter (`ConvAlgo.Native`) on plinth's kernel maps.

plinth's kernel map is converted once to spconv's pair layout (int32 [2, K, max pairs] + counts [K]) and cached on
the map, so output coordinates, the kernel-map cache and the results are the same as the `torch` back end's.
spconv's PyPI build is CPU-only and its backward asks CUDA for the current stream; `patch_cpu_stream` (applied on
import, only where CUDA is unavailable) makes that 0, the CPU's null stream, without editing site-packages.

spconv 2.3.8's CPU ops give wrong results when torch runs more than one thread (measured here: its own SubMConv3d
differed from its single-thread result in 187 of 200 calls at 2 threads, by up to several units; 0 of 200 at one
thread), so on the CPU every spconv call runs with one torch thread.
"""

from __future__ import annotations

import contextlib

import torch

from ..kmap import KernelMap


def patch_cpu_stream() -> None:
    """spconv.pytorch.{ops,cppcore}.get_current_stream -> 0 when there is no CUDA (the documented CPU fix)."""
    if torch.cuda.is_available():
        return
    from spconv.pytorch import cppcore, ops

    def cpu_stream() -> int:
        return 0

    cppcore.get_current_stream = cpu_stream
    ops.get_current_stream = cpu_stream


patch_cpu_stream()


def spconv_pairs(kmap: KernelMap) -> tuple[torch.Tensor, torch.Tensor]:
    """(indice_pairs int32 [2, K, max pairs] padded with -1, indice_pair_num int32 [K]), cached on the map.

    The identity offset of a submanifold map is written out as pairs too: spconv's own `subm` path (centre offset
    as a plain matmul) gave different results from dense conv3d on these pairs on the CPU build (2.3.8), its
    general path matches, so every map goes through the general path.
    """
    cached = getattr(kmap, "_spconv", None)
    if cached is not None:
        return cached
    K, device = kmap.kernel_volume, kmap.in_idx.device
    pairs = torch.full((2, K, max(kmap.sizes + [1])), -1, dtype=torch.int32, device=device)
    for k, (start, size) in enumerate(zip(kmap.starts, kmap.sizes)):
        if k == kmap.identity:
            pairs[:, k, :size] = torch.arange(size, dtype=torch.int32, device=device)
        elif size:
            pairs[0, k, :size] = kmap.in_idx[start:start + size].to(torch.int32)
            pairs[1, k, :size] = kmap.out_idx[start:start + size].to(torch.int32)
    num = torch.tensor(kmap.sizes, dtype=torch.int32, device=device)
    kmap._spconv = (pairs, num)
    return kmap._spconv


@contextlib.contextmanager
def _cpu_threads(device: torch.device):
    """One torch thread around spconv's CPU ops (see the module docstring); nothing changes on CUDA."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SpconvConv(torch.autograd.Function):
    """spconv's indice_conv / indice_conv_backward (general path, ConvAlgo.Native) on plinth's pairs."""

    @staticmethod
    def forward(ctx, feats, filters, pairs, num, n_out):
        from spconv.pytorch import ConvAlgo, ops

        feats = feats.contiguous()
        with _cpu_threads(feats.device):
            out = ops.indice_conv(feats, filters, pairs, num, n_out, False, False, algo=ConvAlgo.Native)
        ctx.save_for_backward(feats, filters, pairs, num)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from spconv.pytorch import ConvAlgo, ops

        feats, filters, pairs, num = ctx.saved_tensors
        with _cpu_threads(feats.device):
            grad_in, grad_filters = ops.indice_conv_backward(
                feats, filters, grad_out.contiguous(), pairs, num, False, False, algo=ConvAlgo.Native
            )
        return grad_in, grad_filters, None, None, None


def conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats [n_in, Cin], weight [K, Cin, Cout] -> [n_out, Cout]."""
    pairs, num = spconv_pairs(kmap)
    filters = weight.permute(2, 0, 1).contiguous()  # spconv's KRSC layout [Cout, K, Cin]
    return SpconvConv.apply(feats, filters, pairs, num, kmap.n_out)
