"""Running untrusted candidate code: a child Python process, a fresh sandbox folder, limits and guards.

Layers (each one cheap, none alone sufficient):
- a separate process (`python -I`, empty environment) killed with its whole process group after `timeout` s;
- resource limits: CPU seconds, address space, file size, no core dumps;
- an audit hook installed before the candidate runs (PEP 578) that refuses: opening files for writing outside
  the sandbox folder, deleting/renaming/chmod outside it, sockets (no network), starting processes, and
  ctypes (which could bypass the rest);
- the working directory is a fresh temporary folder removed afterwards.
This stops accidental damage and the usual escapes of generated code; it is not a security boundary against a
determined attacker — run evaluations of untrusted models inside a container as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GUARD = r'''
import os, sys, resource
SANDBOX = os.path.realpath(os.getcwd())
CPU, MEM_MB, FSIZE_MB = {cpu}, {mem}, {fsize}
resource.setrlimit(resource.RLIMIT_CPU, (CPU, CPU + 1))
if MEM_MB:
    resource.setrlimit(resource.RLIMIT_AS, (MEM_MB << 20, MEM_MB << 20))
resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_MB << 20, FSIZE_MB << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {{"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "shutil.rmtree", "shutil.move", "os.utime"}}
_DENY_PREFIX = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.system",
                "os.kill", "os.killpg", "pty.", "ctypes.", "os.startfile", "_posixsubprocess", "resource.setrlimit",
                "sys.addaudithook", "os.chdir", "os.fchdir", "os.putenv", "os.unsetenv")

def _inside(p):
    try:
        if isinstance(p, int):
            return False
        p = os.fsdecode(p)
        return os.path.realpath(os.path.join(SANDBOX, p)).startswith(SANDBOX + os.sep)
    except Exception:
        return False

def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(ch in str(mode) for ch in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE)
        if writing and not _inside(path):
            raise PermissionError(f"sandbox: writing {{path!r}} outside the sandbox folder is not allowed")
    elif event in _PATH_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        if not all(_inside(p) for p in paths):
            raise PermissionError(f"sandbox: {{event}} outside the sandbox folder is not allowed")
    elif event.startswith(_DENY_PREFIX):
        raise PermissionError(f"sandbox: {{event}} is not allowed")

sys.addaudithook(_hook)
del resource
_src = open("program.py", encoding="utf-8").read()
_code = compile(_src, "program.py", "exec")
exec(_code, {{"__name__": "__main__"}})
'''


@dataclass
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | error
    detail: str = ""


def run_program(program: str, timeout: float = 5.0, memory_mb: int = 1024, fsize_mb: int = 16) -> Outcome:
    """Run `program` (Python source) in a sandboxed child process; passed means exit status 0 in time."""
    with tempfile.TemporaryDirectory(prefix="plinth-sandbox-") as tmp:
        Path(tmp, "program.py").write_text(program, encoding="utf-8")
        guard = GUARD.format(cpu=max(1, int(timeout) + 1), mem=memory_mb, fsize=fsize_mb)
        Path(tmp, "guard.py").write_text(guard, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "HOME": tmp,
               "TMPDIR": tmp, "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "guard.py"], cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as exc:
            return Outcome(False, "error", f"could not start python: {exc}")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return Outcome(False, "timeout", f"killed after {timeout:g} s")
        finally:
            _kill_group(proc)
        if proc.returncode == 0:
            return Outcome(True, "passed")
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:]
        if proc.returncode < 0:
            return Outcome(False, "failed", f"killed by signal {-proc.returncode}; " + " | ".join(tail))
        return Outcome(False, "failed", " | ".join(tail)[-500:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
