"""Exact k-th largest magnitude over a whole model, in two streaming passes and constant memory.

The paper trims each task vector to its top-k% over the whole model. Concatenating every tensor to call
`kthvalue` would hold the model in memory, so this selects on the float32 bit patterns instead: for
non-negative floats the bit pattern, read as an integer, orders exactly like the value. Pass 1 counts the top 16
bits (32,768 bins); the bin holding the k-th largest is then refined in pass 2 by counting the low 16 bits of the
entries in that bin. The result is the exact float `kthvalue` would return, not an approximation.
"""

from __future__ import annotations

from typing import Any

HI_BINS = 1 << 15  # |x| has the sign bit clear, so the top 16 bits take 2^15 values
LO_BINS = 1 << 16


class MagnitudeSelector:
    """Find the k-th largest |x| over a stream of float32 tensors: `add(x)` every tensor, `next_pass()`,
    `add(x)` every tensor again (same values), then `value()`."""

    def __init__(self, k: int):
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

    def add(self, x: Any) -> None:
        import torch

        bits = x.detach().abs().reshape(-1).contiguous().view(torch.int32)
        if self.pass_ == 1:
            self.seen += bits.numel()
            self.hi += torch.bincount(bits >> 16, minlength=HI_BINS)
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
        if self.k > self.seen:
            raise ValueError(f"k={self.k} exceeds the {self.seen} entries seen")
        self.bin, self.rank_in_bin = self._from_top(self.hi, self.k)
        self.pass_ = 2

    def value(self) -> float:
        import torch

        if self.pass_ != 2:
            raise RuntimeError("call next_pass() and stream the tensors a second time first")
        low, _ = self._from_top(self.lo, self.rank_in_bin)
        bits = (self.bin << 16) | low
        return float(torch.tensor([bits], dtype=torch.int32).view(torch.float32))
