"""The merge equations, one tensor at a time (float32 torch tensors).

Shared by the streaming engine and the in-memory reference, so both compute bit-identical results; the tests
check these against independent dense implementations of the papers' equations.

TIES (Yadav et al. 2023), with per-model weights applied before the sign election as mergekit does:
    τ_i = θ_i − θ_base                       task vectors
    τ̂_i = trim(τ_i, density_i)              keep exactly the k = ⌊density·n⌋ largest magnitudes
    γ   = sign(Σ_i w_i τ̂_i)                 elected sign
    τ_m = Σ_{i: sign(w_i τ̂_i) = γ} w_i τ̂_i / Σ_{i: ...} w_i     disjoint (weighted) mean; zeros never agree
    θ   = θ_base + λ τ_m
With every w_i = 1 this is the paper's disjoint mean. DARE (Yu et al. 2023) replaces the trim with a random drop
of each entry with probability 1 − density and a rescale of the survivors by 1/density.

The trim keeps exactly k entries, as mergekit's top-k does: every entry above the k-th largest magnitude t, and
of the entries *equal* to t only as many as k still allows, the first ones in flat (row-major) order. Keeping all
entries tied at t instead would keep far more than k on bf16/fp16 task vectors, whose few mantissa bits make many
magnitudes equal (density 0.2 kept ~37% of a bf16 model).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence


def keep_count(n: int, density: float) -> int:
    """How many entries of `n` a trim at `density` keeps: ⌊density·n⌋ (mergekit's rule), at least 1."""
    return max(1, min(n, math.floor(density * n + 1e-9)))


def magnitude_threshold(delta: Any, density: float) -> float:
    """The k-th largest |delta| (k = keep_count): entries above it survive the trim, and the first of those equal
    to it up to k in all."""
    import torch

    flat = delta.abs().reshape(-1)
    n = flat.numel()
    if n == 0 or density >= 1.0:
        return 0.0
    k = keep_count(n, density)
    return float(torch.kthvalue(flat, n - k + 1).values)


def trim_(delta: Any, threshold: float, ties: int | None = None) -> int:
    """Zero, in place, every entry with |delta| below `threshold`, and of the entries equal to it all but the first
    `ties` in flat order (None: keep them all). Returns how many tied entries were kept, so a caller trimming a
    stream of tensors against one global budget can carry the rest on."""
    if threshold <= 0.0:
        return 0
    delta.masked_fill_(delta.abs() < threshold, 0.0)
    return keep_first_ties_(delta, threshold, ties) if ties is not None else 0


TIE_CHUNK = 1 << 22  # entries scanned at a time for ties: bounds the extra memory to a few MB


def keep_first_ties_(delta: Any, threshold: float, budget: int) -> int:
    """Zero, in place, the entries with |delta| == threshold after the first `budget` (flat order); returns how
    many were kept (≤ budget)."""
    if not delta.is_contiguous():
        raise ValueError("keep_first_ties_ needs a contiguous tensor")
    flat = delta.view(-1)
    kept = 0
    for start in range(0, flat.numel(), TIE_CHUNK):
        part = flat[start : start + TIE_CHUNK]
        tied = part.abs() == threshold
        count = int(tied.sum())
        if count == 0:
            continue
        room = budget - kept
        if count <= room:
            kept += count
        elif room > 0:
            part[tied.nonzero().view(-1)[room:]] = 0.0
            kept = budget
        else:
            part.masked_fill_(tied, 0.0)
    return kept


def dare_seed(seed: int, model_index: int, tensor_name: str) -> int:
    """A per-(model, tensor) seed, so DARE's drop mask is the same whatever order tensors are visited in."""
    digest = hashlib.sha256(f"{seed}:{model_index}:{tensor_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def dare_(delta: Any, density: float, seed: int) -> Any:
    """Drop each entry with probability 1 − density and rescale survivors by 1/density, in place."""
    import torch

    if density >= 1.0:
        return delta
    g = torch.Generator().manual_seed(seed)
    drop = torch.rand(delta.shape, generator=g) >= density
    delta.masked_fill_(drop, 0.0)
    delta.mul_(1.0 / density)
    return delta


def trim_to_density_(delta: Any, density: float) -> float:
    """Trim `delta` in place to exactly its top k = ⌊density·n⌋ magnitudes (ties at the cut: first in flat order);
    returns the threshold used."""
    import torch

    n = delta.numel()
    if n == 0 or density >= 1.0:
        return 0.0
    k = keep_count(n, density)
    mag = delta.abs()
    t = float(torch.kthvalue(mag.reshape(-1), n - k + 1).values)
    if t > 0.0:
        above, tied = int((mag > t).sum()), int((mag == t).sum())
        delta.masked_fill_(mag < t, 0.0)
        del mag
        if above + tied > k:  # more entries share the k-th magnitude than fit: keep the first ones
            keep_first_ties_(delta, t, k - above)
    return t


def combine(deltas: list[Any], weights: Sequence[float], sign_consensus: bool, normalize: bool) -> Any:
    """Mix (already sparsified) deltas into one. Consumes `deltas` (the list is emptied, its tensors reused as
    buffers): besides the N deltas only the elected sign, the divisor and a boolean mask are alive.

    Without consensus: Σ w_i δ_i (÷ Σ w_i when normalize). With consensus (TIES): keep only entries whose
    weighted sign agrees with sign(Σ w_i δ_i) (zeros never agree); normalize divides each entry by the sum of the
    weights that agreed there (entries where none agreed stay 0)."""
    import torch

    weights = list(weights)
    if not sign_consensus:
        mixed = deltas.pop(0)
        if weights[0] != 1.0:
            mixed.mul_(weights[0])
        for w in weights[1:]:
            mixed.add_(deltas.pop(0), alpha=w)
        if normalize:
            total = float(sum(weights))
            if abs(total) > 1e-8:
                mixed.div_(total)
        return mixed
    for d, w in zip(deltas, weights):
        if w != 1.0:
            d.mul_(w)
    sign = torch.zeros_like(deltas[0])
    for d in deltas:
        sign.add_(d)
    sign.sign_()
    divisor = torch.zeros_like(deltas[0]) if normalize else None
    for d, w in zip(deltas, weights):
        # zero the entries that disagree with γ, in place: d·γ is |d| where they agree and ≤ 0 elsewhere, so
        # clamping at 0 and multiplying by γ again (exact: γ is ±1 or 0) restores exactly the agreeing entries
        d.mul_(sign).clamp_(min=0.0).mul_(sign)
        if divisor is not None:
            divisor.add_(d.ne(0.0), alpha=w)
    del sign
    mixed = deltas.pop(0)
    while deltas:
        mixed.add_(deltas.pop(0))
    if divisor is not None:
        divisor.masked_fill_(divisor.abs() < 1e-8, 1.0)
        mixed.div_(divisor)
    return mixed
