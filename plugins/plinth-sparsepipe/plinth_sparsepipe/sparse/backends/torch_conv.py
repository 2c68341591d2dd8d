"""The `torch` back end's convolution: gather -> GEMM -> scatter over a kernel map, as custom autograd Functions.

Three dataflows, same result:
- per offset (`GatherGemmScatter`): for each offset k, out[out_k] += feats[in_k] @ W[k]; the identity offset of a
  submanifold map is one plain matmul that initialises the output. Backward per offset without autograd:
  grad_in[in_k] += grad_out[out_k] @ W[k]^T and grad_W[k] = feats[in_k]^T @ grad_out[out_k]. Gathers go into one
  preallocated buffer (`index_select(out=)`), products into another (`mm(out=)`), so nothing large is allocated
  per offset; nothing is saved for backward beyond the inputs.
- fused (`FusedGatherGemm`): gather all offsets into [rows, K*Cin] (missing neighbours read a zero row) and do one
  GEMM with W viewed as [K*Cin, Cout], in row chunks to bound the column buffer. Does K*n_out*Cin*Cout multiply-adds
  whatever the occupancy, but issues two large ops instead of 2K small ones: wins on small or dense layers.
- compiled (`CompiledGatherGemmScatter`, CPU float32/float64): gather -> GEMM -> scatter in C++
  (`csrc/gather_gemm_scatter.cpp`, built at first use by `compiled.kernel()`), tiled by output rows forward and by
  input rows backward so a tile and the rows it gathers stay in cache, tiles spread over torch's threads, one
  single-threaded BLAS call per (tile, offset); no per-op Python or dispatcher cost. Falls back to per offset
  (one warning) where it cannot build.
`choose_dataflow` picks one per call from a rule measured by benchmarks/sparse_conv.py (see docs).
"""

from __future__ import annotations

import torch

from ..kmap import KernelMap
from . import compiled

# Without the compiled kernel, fused wins where the per-offset loop's fixed cost per op dominates: small layers
# (measured by benchmarks/sparse_conv.py --sections dataflow; the crossover sat between n_out*Cin*Cout = 1M and 8M).
FUSED_MAX_WORK = 1 << 21
_CHUNK_ELEMENTS = 1 << 22  # fused: column-buffer elements per chunk (16 MiB of float32)
CHUNK_ELEMENTS = 1 << 20  # per offset: buffer elements per gather -> mm -> scatter step (4 MiB float32)


def choose_dataflow(kmap: KernelMap, c_in: int, c_out: int, feats: torch.Tensor | None = None) -> str:
    """'compiled' for CPU float32/float64 feats when the kernel builds (the first call builds it); otherwise (CUDA,
    other dtypes, no compiler, PLINTH_SPARSE_KERNEL=torch, feats not given) 'fused' when
    n_out * c_in * c_out <= FUSED_MAX_WORK, else 'per_offset'. Measured by benchmarks/sparse_conv.py --sections
    dataflow (2026-12-02, 2 threads): compiled was the fastest on all 18 layers, 92 to 29,671 output sites at 16 and
    64 channels (1.5x to 3.5x faster than the better of the other two); see docs/plugins/sparsepipe.md."""
    if feats is not None and feats.dtype in (torch.float32, torch.float64) and feats.device.type == "cpu":
        if compiled.available():
            return "compiled"
    if kmap.kernel_volume > 1 and kmap.n_out * c_in * c_out <= FUSED_MAX_WORK:
        return "fused"
    return "per_offset"


def compiled_supported(feats: torch.Tensor, weight: torch.Tensor) -> bool:
    """The compiled kernel takes CPU float32/float64 (feats and weight alike) and must have built."""
    return (
        feats.device.type == "cpu" and weight.device.type == "cpu" and feats.dtype == weight.dtype
        and feats.dtype in (torch.float32, torch.float64) and compiled.available()
    )


def conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, dataflow: str | None = None) -> torch.Tensor:
    """feats [n_in, Cin], weight [K, Cin, Cout] -> [n_out, Cout]. `dataflow` 'compiled' on inputs the kernel does
    not take (CUDA, half precision, no build) runs 'per_offset'."""
    dataflow = dataflow or choose_dataflow(kmap, weight.shape[1], weight.shape[2], feats=feats)
    if dataflow == "fused":
        return FusedGatherGemm.apply(feats, weight, kmap)
    if dataflow == "compiled" and compiled_supported(feats, weight):
        return CompiledGatherGemmScatter.apply(feats, weight, kmap)
    return GatherGemmScatter.apply(feats, weight, kmap)


def _offsets(kmap: KernelMap):
    """(k, in_idx_k, out_idx_k) for the stored (non-identity, non-empty) offsets."""
    for k, (start, size) in enumerate(zip(kmap.starts, kmap.sizes)):
        if k != kmap.identity and size:
            yield k, kmap.in_idx[start:start + size], kmap.out_idx[start:start + size]


def _chunk_rows(kmap: KernelMap, width: int) -> int:
    """Pairs per step: 16384 at 64 channels, never more than the largest offset needs. Measured for 3^3 64->64
    fwd + bwd on 113k voxels (1.5M pairs), best of 3 (2026-12-02): 1 thread 0.59 s vs 0.62 s at 4096 rows and 0.77 s
    unchunked; 2 threads 0.38 s vs 0.39 s and 0.42 s, and with OMP_WAIT_POLICY=PASSIVE 0.59 s vs 1.12 s and 0.46 s
    (small ops pay a thread wake-up each)."""
    largest = max([n for k, n in enumerate(kmap.sizes) if k != kmap.identity] or [0])
    return min(largest, max(64, CHUNK_ELEMENTS // max(1, width)))


def _chunks(kmap: KernelMap, rows: int):
    """(k, in_idx, out_idx) pieces of at most `rows` pairs: the gather/product buffers stay in cache."""
    for k, i_in, i_out in _offsets(kmap):
        for a in range(0, len(i_in), rows):
            yield k, i_in[a:a + rows], i_out[a:a + rows]


class GatherGemmScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        feats = feats.contiguous()
        weight = weight.contiguous()
        c_in, c_out = weight.shape[1:]
        out = feats.new_empty(kmap.n_out, c_out)
        if kmap.identity is not None:
            torch.mm(feats, weight[kmap.identity], out=out)
        else:
            out.zero_()
        rows = _chunk_rows(kmap, max(c_in, c_out))
        gathered, product = feats.new_empty(rows, c_in), feats.new_empty(rows, c_out)
        for k, i_in, i_out in _chunks(kmap, rows):
            n = len(i_in)
            g, p = gathered[:n], product[:n]
            torch.index_select(feats, 0, i_in, out=g)
            torch.mm(g, weight[k], out=p)
            out.index_add_(0, i_out, p)
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight = ctx.saved_tensors
        kmap = ctx.kmap
        need_in, need_w = ctx.needs_input_grad[:2]
        grad_out = grad_out.contiguous()
        c_in, c_out = weight.shape[1:]
        grad_in = grad_w = None
        if need_in:
            grad_in = feats.new_empty(kmap.n_in, c_in)
            if kmap.identity is not None:
                torch.mm(grad_out, weight[kmap.identity].t(), out=grad_in)
            else:
                grad_in.zero_()
        if need_w:
            grad_w = torch.zeros_like(weight)
            if kmap.identity is not None:
                torch.mm(feats.t(), grad_out, out=grad_w[kmap.identity])
        rows = _chunk_rows(kmap, max(c_in, c_out))
        g_out, g_in = feats.new_empty(rows, c_out), feats.new_empty(rows, c_in)
        for k, i_in, i_out in _chunks(kmap, rows):
            n = len(i_in)
            go = g_out[:n]
            torch.index_select(grad_out, 0, i_out, out=go)
            if need_in:
                gi = g_in[:n]
                torch.mm(go, weight[k].t(), out=gi)
                grad_in.index_add_(0, i_in, gi)
            if need_w:
                f = g_in[:n]
                torch.index_select(feats, 0, i_in, out=f)
                grad_w[k].addmm_(f.t(), go)
        return grad_in, grad_w, None


COMPILED_TILE_BYTES = 1 << 18  # compiled: bytes of one tile's gather + product buffers, per thread


def compiled_tile_rows(c_in: int, c_out: int, itemsize: int = 4, n_rows: int | None = None) -> int:
    """Rows per tile of the compiled kernel: 1024 at 64 channels (float32), fewer on a small layer so that every
    thread gets tiles (at least 4 per thread, tiles of at least 32 rows)."""
    rows = max(16, COMPILED_TILE_BYTES // (itemsize * (c_in + c_out)))
    if n_rows is not None:
        rows = min(rows, max(32, -(-n_rows // (4 * torch.get_num_threads()))))
    return rows


def _compiled_meta(kmap: KernelMap):
    """(forward pairs: output rows sorted + their input rows, backward pairs: input rows sorted + their output
    rows, starts, sizes, identity), each offset's pairs sorted by that side, cached on the map. A map already in
    order (built on sorted coordinates) is used as it is, without a copy. Bounds-checks every index once, so the
    kernel can read without checks."""
    meta = getattr(kmap, "_compiled_meta", None)
    if meta is None:
        ext = compiled.kernel()
        starts, sizes = list(kmap.starts), list(kmap.sizes)
        identity = -1 if kmap.identity is None else kmap.identity
        in_idx, out_idx = kmap.in_idx.contiguous(), kmap.out_idx.contiguous()
        sorted_out, in_by_out = ext.sort_pairs(out_idx, in_idx, starts, sizes, identity, kmap.n_out, kmap.n_in)
        sorted_in, out_by_in = ext.sort_pairs(in_idx, out_idx, starts, sizes, identity, kmap.n_in, kmap.n_out)
        forward = (out_idx, in_idx) if sorted_out is None else (sorted_out, in_by_out)
        backward = (in_idx, out_idx) if sorted_in is None else (sorted_in, out_by_in)
        meta = (forward, backward, starts, sizes, identity)
        kmap._compiled_meta = meta
    return meta


class CompiledGatherGemmScatter(torch.autograd.Function):
    """The gather -> GEMM -> scatter dataflow as one compiled call each way (`backends/csrc/gather_gemm_scatter.cpp`):
    tiled by output rows forward and input rows backward, all offsets of a tile on one thread."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        ext = compiled.kernel()
        feats, weight = feats.contiguous(), weight.contiguous()
        (stat, other), _, starts, sizes, identity = _compiled_meta(kmap)
        tile = compiled_tile_rows(weight.shape[1], weight.shape[2], feats.element_size(), kmap.n_out)
        out = ext.forward(feats, weight, stat, other, starts, sizes, identity, kmap.n_out, tile)
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        ext = compiled.kernel()
        feats, weight = ctx.saved_tensors
        need_in, need_w = (bool(n) for n in ctx.needs_input_grad[:2])
        _, (stat, other), starts, sizes, identity = _compiled_meta(ctx.kmap)
        tile = compiled_tile_rows(weight.shape[1], weight.shape[2], feats.element_size(), ctx.kmap.n_in)
        grad_in, grad_w = ext.backward(grad_out, feats, weight, stat, other, starts, sizes, identity, tile, need_in,
                                       need_w)
        return grad_in, grad_w, None


def neighbour_table(kmap: KernelMap) -> torch.Tensor:
    """int64 [n_out, K]: input row of each (output, offset), n_in where there is none (a zero row). Cached."""
    table = getattr(kmap, "_table", None)
    if table is None:
        table = torch.full((kmap.n_out, kmap.kernel_volume), kmap.n_in, dtype=torch.int64, device=kmap.in_idx.device)
        if kmap.identity is not None:
            table[:, kmap.identity] = torch.arange(kmap.n_out, device=table.device)
        for k, i_in, i_out in _offsets(kmap):
            table[i_out, k] = i_in
        kmap._table = table
    return table


def _row_chunks(n_rows: int, width: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, width))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


class FusedGatherGemm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        K, c_in, c_out = weight.shape
        table = neighbour_table(kmap)
        padded = torch.cat([feats, feats.new_zeros(1, c_in)])
        w = weight.reshape(K * c_in, c_out)
        out = feats.new_empty(kmap.n_out, c_out)
        for a, b in _row_chunks(kmap.n_out, K * c_in):
            cols = padded.index_select(0, table[a:b].reshape(-1)).view(b - a, K * c_in)
            torch.mm(cols, w, out=out[a:b])
        ctx.save_for_backward(padded, weight)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        padded, weight = ctx.saved_tensors
        kmap = ctx.kmap
        K, c_in, c_out = weight.shape
        table = neighbour_table(kmap)
        grad_out = grad_out.contiguous()
        w = weight.reshape(K * c_in, c_out)
        grad_padded = torch.zeros_like(padded) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        for a, b in _row_chunks(kmap.n_out, K * c_in):
            rows = table[a:b].reshape(-1)
            if grad_w is not None:
                cols = padded.index_select(0, rows).view(b - a, K * c_in)
                grad_w.addmm_(cols.t(), grad_out[a:b])
            if grad_padded is not None:
                grad_cols = torch.mm(grad_out[a:b], w.t()).view(-1, c_in)
                grad_padded.index_add_(0, rows, grad_cols)
        grad_in = grad_padded[:-1] if grad_padded is not None else None
        grad_w = grad_w.view_as(weight) if grad_w is not None else None
        return grad_in, grad_w, None
