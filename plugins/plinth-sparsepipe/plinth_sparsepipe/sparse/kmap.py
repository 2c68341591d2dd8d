"""Kernel maps: for each kernel offset, the (input row, output row) pairs a sparse convolution or pooling connects.

Built by hashing: each coordinate packs into one int64 key (batch 15 bits, x/y/z 16 bits each, offset by 2^15),
input keys are sorted once, and every (output site + offset) key is looked up with one `torch.searchsorted`
over all offsets at once. Because each field stays in range, key(c + d) == key(c) + key(d), so a neighbour query
is one addition. Output coordinates:

- submanifold (stride 1): the input coordinates; output i reads input c_i + d for every offset d present.
- strided ("down", conv stride s > 1 on a tensor of stride t): the unique floor(c / (t*s)) * (t*s) of the inputs,
  batch kept, sorted by key (so rows stay grouped by batch); output u reads input u + d*t*dilation.
- generative (stride 1, not submanifold): every site some input reaches, u = c - d; output u reads u + d.

Offsets of a kernel of size k: -(k//2)..k//2 for odd k, 0..k-1 for even k, per axis, x outermost (the index of
offset (a, b, c) is a*k*k + b*k + c, the order of a dense `conv3d` weight's last three dims).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch

BITS = 16
LIMIT = 1 << (BITS - 1)
MAX_BATCH = 1 << 15
_MASK = (1 << BITS) - 1


def pack(coords: torch.Tensor) -> torch.Tensor:
    """int64 keys of [N, 4] (batch, x, y, z) coordinates; order of keys = (batch, x, y, z) lexicographic."""
    c = coords.long()
    return (c[:, 0] << (3 * BITS)) | ((c[:, 1] + LIMIT) << (2 * BITS)) | ((c[:, 2] + LIMIT) << BITS) | (c[:, 3] + LIMIT)


def unpack(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack`: int32 [N, 4]."""
    cols = [keys >> (3 * BITS)] + [((keys >> (s * BITS)) & _MASK) - LIMIT for s in (2, 1, 0)]
    return torch.stack(cols, 1).to(torch.int32)


def _key_delta(offsets: torch.Tensor) -> torch.Tensor:
    o = offsets.long()
    return (o[:, 0] << (2 * BITS)) + (o[:, 1] << BITS) + o[:, 2]


@lru_cache(maxsize=None)
def _offset_grid(kernel_size: int) -> tuple[tuple[int, int, int], ...]:
    r = range(-(kernel_size // 2), kernel_size // 2 + 1) if kernel_size % 2 else range(kernel_size)
    return tuple((a, b, c) for a in r for b in r for c in r)


def kernel_offsets(kernel_size: int, step: int = 1, device=None) -> torch.Tensor:
    """int64 [k^3, 3] offsets in coordinate units (step = tensor stride x dilation)."""
    return torch.tensor(_offset_grid(kernel_size), dtype=torch.int64, device=device) * step


def check_range(coords: torch.Tensor, reach: int) -> None:
    """Coordinates (plus the kernel's reach) must fit the 16-bit key fields, batch indices the 15-bit one."""
    if not len(coords):
        return
    lo, hi = int(coords[:, 1:].min()), int(coords[:, 1:].max())
    if lo - reach < -LIMIT or hi + reach >= LIMIT:
        raise ValueError(
            f"sparse coordinates must lie in [{-LIMIT + reach}, {LIMIT - reach}) for this kernel, got [{lo}, {hi}]"
        )
    b_lo, b_hi = int(coords[:, 0].min()), int(coords[:, 0].max())
    if b_lo < 0 or b_hi >= MAX_BATCH:
        raise ValueError(f"batch indices must lie in [0, {MAX_BATCH}), got [{b_lo}, {b_hi}]")


@dataclass
class KernelMap:
    """Pairs per kernel offset, concatenated in offset order: offset k owns
    in_idx/out_idx[starts[k] : starts[k] + sizes[k]].

    The identity offset of a submanifold map (d = 0: output i reads input i) is not stored: `identity` names it and
    the convolution treats it as one plain matmul. `out_coords` is set for maps that create coordinates.
    """

    in_idx: torch.Tensor
    out_idx: torch.Tensor
    sizes: list[int]
    n_in: int
    n_out: int
    identity: int | None = None
    out_coords: torch.Tensor | None = None
    _transposed: "KernelMap | None" = field(default=None, repr=False)

    @property
    def kernel_volume(self) -> int:
        return len(self.sizes)

    @property
    def starts(self) -> list[int]:
        out, s = [], 0
        for k, n in enumerate(self.sizes):
            out.append(s)
            s += 0 if k == self.identity else n
        return out

    @property
    def num_pairs(self) -> int:
        """All connections, identity included (the useful multiply-adds are num_pairs * Cin * Cout)."""
        return sum(self.sizes)

    def transposed(self) -> "KernelMap":
        """The same connections with inputs and outputs swapped (a transposed conv on the strided conv's map)."""
        if self._transposed is None:
            self._transposed = KernelMap(
                self.out_idx, self.in_idx, self.sizes, self.n_out, self.n_in, self.identity, None, self
            )
        return self._transposed


def _lookup(sorted_keys: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(position in sorted_keys, found) for each query."""
    if len(sorted_keys) == 0:
        return torch.zeros_like(queries), torch.zeros_like(queries, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, queries).clamp_(max=len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == queries


def _lookup_columns(sorted_keys: torch.Tensor, out_keys: torch.Tensor, offsets: torch.Tensor, step: int, k: int):
    """Lookups for a k^3 offset grid with one searchsorted per (dx, dy) column instead of one per offset.

    Offsets of a column differ only in z, by `step`; when no input key lies strictly between two targets of a
    column (input z are multiples of `step`), the input matching target j + 1 is at most one row after the
    candidate for target j, so the candidate advances by one row exactly when target j was found.
    """
    n = len(sorted_keys)
    base = out_keys[None, :] + _key_delta(offsets[::k])[:, None]  # [k*k, N_out], lowest z of each column
    pos = torch.searchsorted(sorted_keys, base)
    positions, found = [], []
    for j in range(k):
        cand = pos.clamp(max=n - 1)
        hit = sorted_keys[cand] == base + j * step
        positions.append(cand)
        found.append(hit)
        pos = pos + hit
    # offsets are z-fastest: offset index = column * k + j
    return torch.stack(positions, 1).reshape(len(offsets), -1), torch.stack(found, 1).reshape(len(offsets), -1)


def _lookup_offsets(
    sorted_keys: torch.Tensor, out_keys: torch.Tensor, offsets: torch.Tensor, step: int | None, k: int
):
    """(pos, found) [len(offsets), N_out] for whole z-columns of k offsets: `step` = z spacing of inputs and offsets
    when they coincide (no dilation), which enables the column lookup; None looks every offset up on its own."""
    if step is not None and len(sorted_keys) and k > 1:
        return _lookup_columns(sorted_keys, out_keys, offsets, step, k)
    return _lookup(sorted_keys, out_keys[None, :] + _key_delta(offsets)[:, None])


def _collect(pos: torch.Tensor, found: torch.Tensor, perm: torch.Tensor):
    """(in_idx, out_idx, sizes) offset-major from lookup results; out_idx ascending within an offset."""
    sizes = found.sum(1).tolist()
    k_idx, out_idx = found.nonzero(as_tuple=True)
    return perm[pos[k_idx, out_idx]], out_idx, sizes


def _pairs(in_keys: torch.Tensor, out_keys: torch.Tensor, offsets: torch.Tensor, step: int | None, k: int):
    sorted_keys, perm = torch.sort(in_keys)
    return _collect(*_lookup_offsets(sorted_keys, out_keys, offsets, step, k), perm)


def submanifold_map(coords: torch.Tensor, kernel_size: int, dilation: int = 1, tensor_stride: int = 1) -> KernelMap:
    """For odd kernels only the offsets before the centre are looked up: the pairs of offset K-1-k (its mirror,
    -d) are those of offset k with inputs and outputs swapped."""
    offsets = kernel_offsets(kernel_size, tensor_stride * dilation, coords.device)
    check_range(coords, int(offsets.abs().max()))
    keys = pack(coords)
    n, K = len(keys), len(offsets)
    identity = _offset_grid(kernel_size).index((0, 0, 0))
    step = tensor_stride if dilation == 1 else None
    sorted_keys, perm = torch.sort(keys)
    if kernel_size % 2 == 0:
        pos, found = _lookup_offsets(sorted_keys, keys, offsets, step, kernel_size)
        found[identity] = False
        in_idx, out_idx, sizes = _collect(pos, found, perm)
        sizes[identity] = n
        return KernelMap(in_idx, out_idx, sizes, n, n, identity=identity)
    half = K // 2  # == identity
    whole_columns = (half // kernel_size + 1) * kernel_size
    pos, found = _lookup_offsets(sorted_keys, keys, offsets[:whole_columns], step, kernel_size)
    i_in, i_out, sizes = _collect(pos[:half], found[:half], perm)
    ins, outs = list(i_in.split(sizes)), list(i_out.split(sizes))
    mirrored = range(half - 1, -1, -1)  # offsets half+1 .. K-1 mirror half-1 .. 0
    in_idx = torch.cat(ins + [outs[m] for m in mirrored]) if K > 1 else i_in
    out_idx = torch.cat(outs + [ins[m] for m in mirrored]) if K > 1 else i_out
    sizes = sizes + [n] + [sizes[m] for m in mirrored]
    return KernelMap(in_idx, out_idx, sizes, n, n, identity=identity)


def downsample_map(
    coords: torch.Tensor, kernel_size: int, stride: int, dilation: int = 1, tensor_stride: int = 1
) -> KernelMap:
    offsets = kernel_offsets(kernel_size, tensor_stride * dilation, coords.device)
    check_range(coords, int(offsets.abs().max()) + stride * tensor_stride)
    out_stride = tensor_stride * stride
    coarse = coords.long().clone()
    coarse[:, 1:] = torch.div(coarse[:, 1:], out_stride, rounding_mode="floor") * out_stride
    out_keys = torch.unique(pack(coarse), sorted=True)
    step = tensor_stride if dilation == 1 else None
    in_idx, out_idx, sizes = _pairs(pack(coords), out_keys, offsets, step, kernel_size)
    return KernelMap(in_idx, out_idx, sizes, len(coords), len(out_keys), out_coords=unpack(out_keys))


def generative_map(coords: torch.Tensor, kernel_size: int, dilation: int = 1, tensor_stride: int = 1) -> KernelMap:
    offsets = kernel_offsets(kernel_size, tensor_stride * dilation, coords.device)
    check_range(coords, 2 * int(offsets.abs().max()))
    keys = pack(coords)
    out_keys = torch.unique((keys[None, :] - _key_delta(offsets)[:, None]).reshape(-1), sorted=True)
    in_idx, out_idx, sizes = _pairs(keys, out_keys, offsets, tensor_stride if dilation == 1 else None, kernel_size)
    return KernelMap(in_idx, out_idx, sizes, len(coords), len(out_keys), out_coords=unpack(out_keys))
