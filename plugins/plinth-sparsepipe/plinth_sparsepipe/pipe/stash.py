"""Weight stashing for asynchronous 1F1B (PipeDream): a backward runs with the weights its forward used.

Under 1F1B a stage updates its weights after every backward while later micro-batches are still in flight, so by
the time micro-batch g comes back its forward's weights are gone. The stash keeps a copy per version still in use:
a forward takes the current version (copied once per version, on first use) and runs the stage through
`torch.func.functional_call` with it, so autograd records the copy, not the live parameters; the backward then
fills the copy's gradients, which `collect` moves to the live parameters for the optimizer. The live parameters
are never part of a graph, so updating them in place is safe. A version is dropped when no micro-batch in flight
uses it; at most warm-up + 1 exist (the tests check it). Buffers (batch-norm running statistics) are not
versioned: a forward in training mode updates the live ones, as it would without a pipeline.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightStash:
    def __init__(self, module: nn.Module):
        self.module = module
        self.live = dict(module.named_parameters())
        self.current = 0  # id of the live weights' version; +1 per optimizer step
        self.versions: dict[int, dict[str, torch.Tensor]] = {}
        self.users: dict[int, int] = {}
        self.peak_versions = 0

    def acquire(self) -> int:
        """The current version for a forward (copied now if no forward used it yet)."""
        v = self.current
        if v not in self.versions:
            self.versions[v] = {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in self.live.items()}
            self.users[v] = 0
            self.peak_versions = max(self.peak_versions, len(self.versions))
        self.users[v] += 1
        return v

    def forward(self, version: int, *args):
        return torch.func.functional_call(self.module, self.versions[version], args)

    def collect(self, version: int) -> None:
        """Move the gradients of `version`'s copy onto the live parameters (added to what is there)."""
        for name, p in self.live.items():
            g = self.versions[version][name].grad
            if g is None:
                continue
            p.grad = g if p.grad is None else p.grad + g
            self.versions[version][name].grad = None

    def release(self, version: int) -> None:
        self.users[version] -= 1
        self._drop_unused()

    def advance(self) -> None:
        """The live weights changed (an optimizer step): later forwards take a new version."""
        self.current += 1
        self._drop_unused()

    def _drop_unused(self) -> None:
        for v in [v for v, n in self.users.items() if n == 0 and v != self.current]:
            del self.versions[v], self.users[v]
