"""Exact k-th largest magnitude over a whole model, streaming, in constant memory and usually one pass.

The paper trims each task vector to its top-k% over the whole model. Concatenating every tensor to call
`kthvalue` would hold the model in memory, so this selects on the float32 bit patterns instead: for
non-negative floats the bit pattern, read as an integer, orders exactly like the value. Pass 1 counts the top 16
bits (32,768 bins); the bin holding the k-th largest is then refined by counting the low 16 bits of the entries
in that bin. The result is the exact float `kthvalue` over the concatenation would return.

The refinement needs the entries of one bin that is only known after pass 1. To avoid a second pass over the
model, pass 1 also keeps the entries whose bin lies in a *window* predicted from a small sample of every tensor
(`estimate_window`); if the k-th entry's bin falls inside it (the usual case) the answer comes from those
candidates, otherwise a second pass over the tensors counts that bin — the answer is exact either way.

The same counts give how many entries *equal* to the threshold belong to the top k (`ties()`): the trim keeps
those first in stream order and zeroes the rest, so exactly k entries survive however many magnitudes tie.
"""

from __future__ import annotations

from typing import Any, Sequence

HI_BINS = 1 << 15  # |x| has the sign bit clear, so the top 16 bits take 2^15 values
LO_BINS = 1 << 16


def bin_of(value: float) -> int:
    """The top-16-bit bin of a non-negative float32 value."""
    import torch

    return int(torch.tensor([abs(value)], dtype=torch.float32).view(torch.int32).item()) >> 16


def estimate_window(samples: Sequence[tuple[Any, float]], k: int, n: int, slack: float = 0.01) -> tuple[int, int]:
    """Bins likely to hold the k-th largest of `n` magnitudes, from weighted samples.

    `samples` are (magnitudes, weight) pairs, weight = entries each sampled entry stands for. The window spans the
    estimated values at ranks k ± slack·n, so rank errors of the sample up to `slack` are still caught."""
    import torch

    vals = torch.cat([s.reshape(-1).float() for s, _ in samples])
    wts = torch.cat([torch.full((s.numel(),), float(w), dtype=torch.float64) for s, w in samples])
    order = torch.argsort(vals, descending=True)
    vals, cum = vals[order], torch.cumsum(wts[order], 0)

    def value_at(rank: float) -> float:
        if rank <= 0:
            return float(vals[0])
        i = int(torch.searchsorted(cum, torch.tensor([rank], dtype=cum.dtype)).item())
        return float(vals[min(i, len(vals) - 1)]) if i < len(vals) else 0.0

    hi = value_at(k - slack * n)
    lo = value_at(k + slack * n)
    return bin_of(lo), bin_of(hi)


class MagnitudeSelector:
    """Find the k-th largest |x| over a stream of float32 tensors: `add(x)` every tensor, `next_pass()`, and if
    `needs_second_pass` `add(x)` every tensor again (same values); then `value()`. `add` may overwrite `x`."""

    def __init__(self, k: int, window: tuple[int, int] | None = None):
        import torch

        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.seen = 0
        self.pass_ = 1
        self.hi = torch.zeros(HI_BINS, dtype=torch.int64)
        self.lo = torch.zeros(LO_BINS, dtype=torch.int64)
        self.bin = -1
        self.rank_in_bin = 0
        self.window = window
        self.candidates: list[Any] = []
        self.needs_second_pass = True

    def add(self, x: Any) -> None:
        import torch

        bits = x.detach().reshape(-1).abs_().view(torch.int32)
        if self.pass_ == 1:
            self.seen += bits.numel()
            top = bits >> 16
            self.hi += torch.bincount(top, minlength=HI_BINS)
            if self.window is not None:
                lo, hi = self.window
                self.candidates.append(bits[(top >= lo) & (top <= hi)])
        else:
            sel = bits[(bits >> 16) == self.bin]
            if sel.numel():
                self.lo += torch.bincount(sel & 0xFFFF, minlength=LO_BINS)

    @staticmethod
    def _from_top(hist: Any, k: int) -> tuple[int, int]:
        """The bin holding the k-th largest entry, and that entry's rank inside the bin (1 = largest)."""
        import torch

        rev = torch.flip(hist, [0]).cumsum(0)
        j = int(torch.searchsorted(rev, torch.tensor([k], dtype=rev.dtype)).item())
        above = int(rev[j - 1]) if j > 0 else 0
        return len(hist) - 1 - j, k - above

    def next_pass(self) -> None:
        import torch

        if self.k > self.seen:
            raise ValueError(f"k={self.k} exceeds the {self.seen} entries seen")
        self.bin, self.rank_in_bin = self._from_top(self.hi, self.k)
        self.pass_ = 2
        if self.window is not None and self.window[0] <= self.bin <= self.window[1]:
            for c in self.candidates:
                sel = c[(c >> 16) == self.bin]
                if sel.numel():
                    self.lo += torch.bincount(sel & 0xFFFF, minlength=LO_BINS)
            self.needs_second_pass = False
        self.candidates = []

    def value(self) -> float:
        """The k-th largest magnitude."""
        return self._select()[0]

    def ties(self) -> int:
        """How many entries equal to `value()` are among the top k (the k-th itself included)."""
        return self._select()[1]

    def _select(self) -> tuple[float, int]:
        import torch

        if self.pass_ != 2:
            raise RuntimeError("call next_pass() (and stream the tensors again if needs_second_pass) first")
        low, rank = self._from_top(self.lo, self.rank_in_bin)
        bits = (self.bin << 16) | low
        return float(torch.tensor([bits], dtype=torch.int32).view(torch.float32)), rank
