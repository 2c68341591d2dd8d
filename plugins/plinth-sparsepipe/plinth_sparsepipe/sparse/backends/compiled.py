"""The compiled CPU kernel behind the `torch` back end's "compiled" dataflow, built at first use.

`csrc/gather_gemm_scatter.cpp` (shipped in the package) is compiled with `torch.utils.cpp_extension.load` into the
standard torch extensions directory (`$TORCH_EXTENSIONS_DIR`, default `~/.cache/torch_extensions/<py>_<cu>/`);
cpp_extension holds a file lock in that directory while it builds, so several processes (pipeline ranks)
starting at once build it once and the others wait and load the result. The build is cached there by a hash of
the source and flags; a fresh cache costs one compile (see docs/plugins/sparsepipe.md for the measured time).

`PLINTH_SPARSE_KERNEL` chooses:
- `auto` (default): build and use it; when no compiler is found or the build fails, one RuntimeWarning line and
  the pure-PyTorch per-offset path instead (never a traceback);
- `compiled`: require it (a failed build raises) - for tests and benchmarks;
- `torch`: never build it; the pure-PyTorch dataflows only.
The decision is made once per process (`kernel()` caches it); `reset()` forgets it (tests).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ENV = "PLINTH_SPARSE_KERNEL"
MODES = ("auto", "compiled", "torch")
NAME = "plinth_sparse_conv"
SOURCE = Path(__file__).with_name("csrc") / "gather_gemm_scatter.cpp"
# -O3 and no -march flags: the loops are gathers and scatters (memory-bound) and the GEMMs are the BLAS torch links
# (MKL picks its instruction set at run time), so a cached build stays valid on any x86-64 sharing the cache.
CFLAGS = ["-O3"]


def _flags() -> tuple[list[str], list[str]]:
    """(cflags, ldflags). With torch's OpenMP back end at::parallel_for is an inline `#pragma omp parallel`, so the
    kernel must be compiled with -fopenmp or it runs on one thread; the OpenMP runtime it binds to is the
    libgomp.so.1 torch has already loaded (same soname), so there is one thread pool, torch's."""
    import torch

    if "OpenMP" in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return CFLAGS + ["-fopenmp"], ["-fopenmp"]
    return CFLAGS, []

_UNSET = object()
_module = _UNSET
_error: str | None = None


def mode() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: choose one of {', '.join(MODES)}")
    return value


def _build():
    from torch.utils import cpp_extension

    with warnings.catch_warnings():  # cpp_extension's own notes (compiler version checks) are not ours to print
        warnings.simplefilter("ignore")
        cflags, ldflags = _flags()
        return cpp_extension.load(
            name=NAME, sources=[str(SOURCE)], extra_cflags=cflags, extra_ldflags=ldflags, verbose=False
        )


def kernel():
    """The compiled module, or None when the mode is `torch` or (mode `auto`) the build failed."""
    global _module, _error
    if _module is not _UNSET:
        if _module is None and mode() == "compiled":
            raise RuntimeError(f"{ENV}=compiled but the compiled sparse conv kernel is unavailable: {_error}")
        return _module
    m = mode()
    if m == "torch":
        return None  # not cached: a later change of the variable still counts
    try:
        _module = _build()
    except Exception as e:  # no compiler, failed compile, failed load: all mean "use the PyTorch path"
        _module, _error = None, _one_line(e)
        if m == "compiled":
            raise RuntimeError(f"{ENV}=compiled but building the sparse conv kernel failed: {_error}") from None
        warnings.warn(
            f"plinth sparsepipe: compiled sparse conv kernel unavailable ({_error}); using the pure-PyTorch path "
            f"(set {ENV}=torch to skip the build)", RuntimeWarning, stacklevel=3,
        )
    return _module


def available() -> bool:
    return kernel() is not None


def compiler_found() -> bool:
    """Whether the C++ compiler cpp_extension would use ($CXX, default c++) is on PATH."""
    import shutil

    return shutil.which(os.environ.get("CXX", "c++").split()[0]) is not None


def error() -> str | None:
    """Why the last build attempt failed (None if it did not)."""
    return _error


def reset() -> None:
    global _module, _error
    _module, _error = _UNSET, None


def _one_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # ninja's failure message ends with the compiler's error; its first line says which step failed
    interesting = [line for line in lines if "error" in line.lower()]
    text = interesting[0] if interesting else (lines[0] if lines else type(e).__name__)
    return f"{type(e).__name__}: {text}"[:300]
