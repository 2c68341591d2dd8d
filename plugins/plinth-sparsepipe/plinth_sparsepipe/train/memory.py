"""Peak memory of a training epoch: process RSS sampled by a background thread (a kernel high-water mark would
include earlier stages run in the same process), and CUDA's max allocated bytes when on a GPU."""

from __future__ import annotations

import os
import threading

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; elsewhere the lifetime peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """`with PeakMemory() as m: ...` then `m.peak_rss` (bytes), `m.start_rss`, `m.cuda_max_allocated` (or None)."""

    def __init__(self, device=None, interval: float = 0.005):
        self.device, self.interval = device, interval
        self.peak_rss = self.start_rss = 0
        self.cuda_max_allocated: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, rss_bytes())

    def __enter__(self) -> "PeakMemory":
        self.start_rss = self.peak_rss = rss_bytes()
        if self._cuda():
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._sample, name="plinth-peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, rss_bytes())
        if self._cuda():
            import torch

            self.cuda_max_allocated = int(torch.cuda.max_memory_allocated(self.device))

    def _cuda(self) -> bool:
        return self.device is not None and str(self.device).startswith("cuda")
