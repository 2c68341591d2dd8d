"""What a user reads when a stage fails: one line saying what is wrong and what to do.

A broken environment (a missing package, a full disk, no memory) is not a bug in plinth or a plugin: its message
is one line with the fix and no traceback. Anything else is a bug somewhere: the message keeps the last frames of
the traceback. Either way the whole traceback goes to RUN_DIR/run.log and the last line says what to do next.
"""

from __future__ import annotations

import errno
import shutil
import traceback
from pathlib import Path

RERUN = "finished stages are kept: run the same command again to continue"

_OS_PROBLEMS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENOMEM: "the machine is out of memory",
    errno.EACCES: "permission denied",
    errno.EROFS: "the file system is read-only",
}


# Below this much free space a failure is put down to the disk: libraries that write through their own C++ streams
# (torch.save's "PytorchStreamWriter ... unexpected pos", safetensors) do not raise ENOSPC.
LOW_DISK_BYTES = 256 << 20


def environment_problem(exc: BaseException, where: Path | None = None) -> str | None:
    """A one-line description with the fix when `exc` (or an exception it was raised from) comes from the
    environment, else None. `where`: a folder the stage writes to, whose free space is checked."""
    for link in _chain(exc):
        found = _one_problem(link)
        if found is not None:
            return found
    if where is not None:
        free = _free_bytes(where)
        if free is not None and free < LOW_DISK_BYTES:
            return (f"the disk holding {where} is full ({free / 2**20:.0f} MiB free; the error was "
                    f"{type(exc).__name__}: {_first_line(exc)}) — free space")
    return None


def _one_problem(exc: BaseException) -> str | None:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return (f"the Python package '{top}' is not installed in {_venv()} — install it (`make setup` installs "
                f"everything plinth declares, or `pip install {top}`)")
    if isinstance(exc, ImportError):
        return f"an installed package does not import ({exc}) — reinstall the environment (`make setup`)"
    if isinstance(exc, MemoryError):
        return "the machine ran out of memory — lower batch sizes or max_length, or free memory"
    if isinstance(exc, OSError) and exc.errno in _OS_PROBLEMS:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{_OS_PROBLEMS[exc.errno]}{where} — free space or fix permissions"
    text = str(exc)
    if "No space left on device" in text:
        return f"the disk is full ({_first_line(exc)}) — free space"
    if type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text:
        return "the GPU ran out of memory — lower batch sizes or max_length, or free GPU memory"
    return None


def _chain(exc: BaseException):
    """`exc` and the exceptions it was raised from or while handling, oldest last, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _free_bytes(where: Path) -> int | None:
    for folder in (Path(where), *Path(where).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def failure_message(stage_id: str, component: str, exc: BaseException, run_log: Path) -> str:
    """The text of the StageFailedError the CLI prints for a stage that raised `exc`."""
    head = f"stage '{stage_id}' ({component}) failed: {type(exc).__name__}: {exc}"
    env = environment_problem(exc, run_log.parent)
    if env is not None:
        return f"stage '{stage_id}' ({component}) cannot run: {env}; then {RERUN} (details: {run_log})"
    tail = "".join(traceback.format_exception(exc)[-6:]).rstrip()
    return f"{head}\n{tail}\n-> full traceback in {run_log}; {RERUN}"


def _venv() -> str:
    import sys

    return sys.prefix
