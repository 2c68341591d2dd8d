"""A rank's clock: how long it computes and waits, and, for emulated device types, how much slower it must be.

Heterogeneous devices on one CPU machine: a device type of speed f (0 < f <= 1, from the cluster file) must take
1/f times as long as this CPU for the same work. Doing extra work would make 3-4 ranks fight over 2 cores and
slow the fast ones too, so a slow rank *waits*: after each piece of compute whose CPU time was c (this thread's
`time.thread_time`, which contention with other processes does not inflate), it sleeps until c / f of wall time has
passed since the compute began. The core is free while it sleeps, and the work itself is real.

Where this departs from real devices: the slowdown is uniform over every op (a real GPU's speed ratio differs per
layer); the base is this CPU at one thread; sleeping ranks add no memory-bandwidth pressure; and a speed-1.0 rank
still shares cores with the others, so its ops can take longer than their CPU time when ranks outnumber cores.
On CUDA devices the base is the wall time after `torch.cuda.synchronize()`, so identical GPUs can emulate
unequal ones the same way.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class RankClock:
    speed: float = 1.0  # emulated speed relative to this device; 1.0: no emulation
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    compute_s: float = 0.0  # wall time in compute, emulated waiting included
    base_s: float = 0.0  # the compute's own time (CPU time, or synchronised wall time on CUDA)
    emulated_wait_s: float = 0.0  # the part of compute_s spent sleeping for the emulation
    wait_s: float = 0.0  # wall time blocked on messages and collectives

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 1.0:
            raise ValueError(f"an emulated device speed must be in (0, 1], got {self.speed}")

    @contextmanager
    def compute(self):
        cuda = self.device.type == "cuda"
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize(self.device)
            wall = time.perf_counter() - wall0
            base = wall if cuda else time.thread_time() - cpu0
            pause = base / self.speed - wall if self.speed < 1.0 else 0.0
            if pause > 0:
                time.sleep(pause)
                self.emulated_wait_s += pause
            self.base_s += base
            self.compute_s += time.perf_counter() - wall0

    @contextmanager
    def waiting(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.wait_s += time.perf_counter() - t0

    def snapshot(self) -> dict[str, float]:
        return {"compute_s": self.compute_s, "base_compute_s": self.base_s,
                "emulated_wait_s": self.emulated_wait_s, "wait_s": self.wait_s}
