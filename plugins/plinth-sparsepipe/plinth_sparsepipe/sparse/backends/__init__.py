"""Convolution back ends chosen by name: `torch` (default, CPU and CUDA), `spconv`, `torchsparse`.

Every back end computes the same thing from the same kernel map (`plinth_sparsepipe.sparse.kmap`), so outputs agree
across back ends and the kernel-map cache is shared; a back end replaces the compute op
`conv(feats [n_in, Cin], weight [K, Cin, Cout], kmap) -> [n_out, Cout]` (differentiable in feats and weight).

`check_backend` is cheap (no heavy import: it only asks whether the package is installed), so a trainer calls it
from its config validation and `plinth validate` reports a bad choice before anything runs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from types import ModuleType

BACKENDS = {
    "torch": ("torch", "plinth_sparsepipe.sparse.backends.torch_conv", "always available (pure PyTorch, CPU and CUDA)"),
    "spconv": ("spconv", "plinth_sparsepipe.sparse.backends.spconv_conv", "`pip install spconv` (CPU) or spconv-cuXXX"),
    "torchsparse": (
        "torchsparse", "plinth_sparsepipe.sparse.backends.torchsparse_conv",
        "CUDA only; install from https://github.com/mit-han-lab/torchsparse (not on PyPI)",
    ),
}
_default = "torch"


def _config_error(message: str) -> Exception:
    from plinth import ConfigError

    return ConfigError(message)


def check_backend(name: str, device: str | None = None) -> None:
    """Raise plinth.ConfigError when `name` is not a back end, is not installed, or cannot run on `device`."""
    if name not in BACKENDS:
        import difflib

        close = difflib.get_close_matches(str(name), BACKENDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _config_error(f"unknown sparse back end '{name}'{hint}; choose one of: {', '.join(BACKENDS)}")
    package, _, how = BACKENDS[name]
    if importlib.util.find_spec(package) is None:
        raise _config_error(f"sparse back end '{name}' is not installed: {how}")
    if name == "torchsparse" and device is not None and not str(device).startswith("cuda"):
        raise _config_error(f"sparse back end 'torchsparse' runs on CUDA only, not on device '{device}'")


def get_backend(name: str | None = None) -> ModuleType:
    """The back end module (has `conv(feats, weight, kmap)`); None means the process default (`set_default_backend`)."""
    name = name or _default
    check_backend(name)
    return importlib.import_module(BACKENDS[name][1])


def default_backend() -> str:
    return _default


def set_default_backend(name: str) -> None:
    """Back end for every layer whose `backend` is None (a trainer sets it from its config)."""
    global _default
    check_backend(name)
    _default = name


@contextlib.contextmanager
def use_backend(name: str):
    """Temporarily change the default back end (tests, benchmarks)."""
    previous = _default
    set_default_backend(name)
    try:
        yield
    finally:
        set_default_backend(previous)
