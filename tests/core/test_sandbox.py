"""plinth.sandbox: escaping programs on both modes (bwrap, and the weaker rlimits mode forced by argument).

Each test runs a program that tries one escape and checks the host side: the file outside was not written, the
host's server saw no connection, the parent's memory did not grow, the program did not count as finished.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings

import pytest

from plinth import ConfigError, sandbox

BWRAP = sandbox._bwrap_problem()
MODES = [pytest.param("bwrap", marks=pytest.mark.skipif(BWRAP is not None, reason=f"no bwrap here: {BWRAP}")),
         "rlimits"]


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def run(source: str, mode: str, **kw) -> sandbox.SandboxResult:
    kw.setdefault("timeout", 10.0)
    result = sandbox.run_python(source, mode=mode, **kw)
    assert result.mode == mode
    return result


def test_a_program_that_runs_to_its_end_finishes(mode):
    ok = run("import collections, typing, json, sys\nfrom typing import List\n"
             "P = collections.namedtuple('P', 'a b')\nassert P(1, 2).b == 2\n"
             "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n"
             "import tempfile\nopen(tempfile.gettempdir() + '/t', 'w').write('x')\n"
             "assert sys.stdin.read() == ''\nprint('hello')\n", mode)
    assert (ok.finished, ok.status, ok.stdout) == (True, "finished", b"hello\n"), ok.stderr


@pytest.mark.parametrize("exit_code", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit",
                                       "raise SystemExit(0)", "import sys\nsys.exit()",
                                       "raise KeyboardInterrupt"])
def test_exiting_before_the_end_is_not_finished(mode, exit_code):
    result = run(f"def check():\n    assert False\n{exit_code}\ncheck()\n", mode)
    assert not result.finished and result.status == "failed"


def test_forging_the_finished_marker_fails(mode):
    forge = ("import os, sys\n"
             "try:\n    sys.audit('plinth.sandbox.finished')\nexcept PermissionError:\n    pass\n"
             "found = []\nf = sys._getframe()\n"
             "while f is not None:\n"
             "    found += [v for v in f.f_locals.values() if isinstance(v, (bytes, str)) and len(v) == 32]\n"
             "    f = f.f_back\n"
             "print('passed', flush=True)\n"
             "for fd in range(1, 64):\n"
             "    for v in found + [b'0' * 32, b'passed']:\n"
             "        try:\n            os.write(fd, v if isinstance(v, bytes) else v.encode())\n"
             "        except OSError:\n            pass\n"
             "os._exit(0)\n")
    result = run(forge, mode)
    assert not result.finished and result.returncode == 0


def test_the_nonce_is_not_reachable(mode):
    for probe in ("import gc\ngc.get_objects()\n", "import sys\nsys.settrace(lambda *a: None)\n",
                  "open('/proc/self/mem', 'rb')\n", "import os\nos.read(os.open('/proc/self/mem', os.O_RDONLY), 1)\n",
                  "import sys\nsys._current_frames()\n"):
        result = run(probe, mode)
        assert not result.finished and "sandbox:" in result.detail, (probe, result.detail)


TAMPER = [
    "import __main__\n__main__._inside = lambda p: True\n__main__._DENY_PREFIX = ('nothing',)\n",  # 2026-12 guard
    "import builtins\nbuiltins.type = lambda *a: str\nbuiltins.isinstance = lambda *a: True\n"
    "builtins.PermissionError = type('Nope', (Exception,), {})\n",
    "import os, posixpath\nos.path.realpath = posixpath.realpath = lambda p, **k: os.getcwd() + '/x'\n"
    "os.path.join = lambda *a: os.getcwd() + '/x'\n",
    "import sys\nsys.audit = lambda *a: None\nsys.addaudithook = lambda h: None\n",
    "import os, posix\nposix.stat = os.stat = lambda *a, **k: None\nposix.getcwd = os.getcwd = lambda: '/'\n",
    "import sys\nsys.modules.clear()\n",
]


@pytest.mark.parametrize("tamper", TAMPER)
def test_switching_the_guard_off_fails(mode, tmp_path, tamper):
    outside = tmp_path / "escape.txt"
    result = run(tamper + f"open({str(outside)!r}, 'w').write('x')\n", mode)
    assert not result.finished and not outside.exists()


def test_writes_outside_fail(mode, tmp_path):
    outside = tmp_path / "out"
    outside.mkdir()
    target = str(outside / "x")
    for program in (
        f"open({target!r}, 'w').write('x')",
        f"import os\nos.close(os.open({target!r}, os.O_WRONLY | os.O_CREAT))",
        f"import pathlib\npathlib.Path({target!r}).write_text('x')",
        f"import sqlite3\nsqlite3.connect({target!r}).execute('create table t (a)')",
        f"import sqlite3\nc = sqlite3.connect(':memory:')\nc.execute(\"attach database '{target}' as e\")\n"
        "c.execute('create table e.t (a)')",
        f"import os\nd = os.open({str(outside)!r}, os.O_RDONLY)\nos.close(os.open('x', os.O_WRONLY | os.O_CREAT, "
        "dir_fd=d))",
        f"import os\nos.symlink({str(outside)!r}, 'link')\nopen('link/x', 'w').write('x')",
        f"import os\nopen('mine', 'w').write('x')\nos.rename('mine', {target!r})",
        f"import shutil\nshutil.rmtree({str(outside)!r})",
        f"import os\nos.chdir({str(outside)!r})\nopen('x', 'w').write('x')",
    ):
        result = run(program + "\n", mode)
        assert not result.finished, program
        assert outside.is_dir() and os.listdir(outside) == [], program


def test_bwrap_filesystem_is_read_only_without_the_audit_hook(tmp_path):
    if BWRAP is not None:
        pytest.skip(f"no bwrap here: {BWRAP}")
    outside = tmp_path / "x"
    for program in (f"open({str(outside)!r}, 'w')\n", "open('/usr/lib/plinth-escape', 'w')\n",
                    "import os\nassert not os.path.exists(os.path.expanduser('~root/.bashrc'))\n"
                    "open('/etc/passwd')\n"):
        result = run(program, "bwrap", audit_hook=False)
        assert not result.finished and not outside.exists(), (program, result.stderr)
    assert not os.path.exists("/usr/lib/plinth-escape")


@pytest.fixture
def server():
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    hits = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(conn.recv(100))
            conn.close()
    stop = threading.Event()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], hits
    stop.set()
    thread.join()
    srv.close()


def connect(port: int) -> str:
    return f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hi')\n"


def test_no_network(mode, server):
    port, hits = server
    result = run(connect(port), mode)
    assert not result.finished and "socket" in result.detail
    assert hits == []


def test_no_network_without_the_audit_hook(mode, server):
    """The OS layer alone: bwrap's and unshare's empty network namespace (loopback down, not the host's)."""
    port, hits = server
    if mode == "rlimits" and not sandbox._unshare_prefix():
        assert "no network namespace" in sandbox.weak_mode_note("test")
        return
    result = run(connect(port), mode, audit_hook=False)
    assert not result.finished and hits == []


def test_no_subprocess(mode, tmp_path):
    outside = tmp_path / "spawned"
    for program in (
        f"import os\nos.system('touch {outside}')",
        f"import subprocess\nsubprocess.run(['touch', '{outside}'])",
        f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{outside}'], {{}})",
        f"import os\nif os.fork() == 0:\n    os.execv('/usr/bin/touch', ['touch', '{outside}'])\nos.wait()",
        "import _posixsubprocess, os\nr, w = os.pipe()\n"
        f"_posixsubprocess.fork_exec(['touch', '{outside}'], [b'/usr/bin/touch'], True, (), None, None, -1, -1, "
        "-1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)\nos.wait()",
        f"import multiprocessing\nmultiprocessing.Process(target=open, args=('{outside}', 'w')).start()",
        "import ctypes\nctypes.CDLL(None).system(b'touch " + str(outside) + "')",
    ):
        result = run(program + "\n", mode)
        assert not result.finished, program
        time.sleep(0.05)
        assert not outside.exists(), program


FORK_BOMB = ("import os, time\nn = 0\ntry:\n    for _ in range(400):\n        if os.fork() == 0:\n"
             "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n"
             "print(n, flush=True)\n")


def test_fork_bomb_is_stopped(mode):
    result = run(FORK_BOMB, mode)
    assert result.stdout == b"0\n", result  # the first fork already raised PermissionError (an OSError)


def test_fork_bomb_is_bounded_by_the_process_limit_without_the_audit_hook(mode):
    enforced = os.geteuid() != 0 or mode == "bwrap" or sandbox._nobody_runs_python(
        os.path.realpath(sys.executable))
    if not enforced:  # root without a way to drop to uid 65534: the weak mode says so in its warning
        assert "the process limit does not apply" in sandbox.weak_mode_note("test")
        return
    started = time.monotonic()
    result = run(FORK_BOMB, mode, timeout=20, max_processes=16, audit_hook=False)
    assert result.finished, result.stderr
    assert int(result.stdout) < 16
    assert time.monotonic() - started < 15  # the sleeping children did not keep the run open


def test_infinite_loop_and_stragglers_are_killed(mode):
    started = time.monotonic()
    result = run("while True:\n    pass\n", mode, timeout=1.0)
    assert (result.finished, result.status) == (False, "timeout") and time.monotonic() - started < 5
    # a child that outlives the program is killed with its process group, so the run returns at once
    started = time.monotonic()
    straggler = run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\n", mode, timeout=20,
                    audit_hook=False, max_processes=0)
    assert straggler.finished and time.monotonic() - started < 10


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood_is_capped_and_the_parent_stays_small(mode, stream):
    write = f"sys.{stream}.buffer.write(chunk)"
    finite = f"import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(512):\n    {write}\n"
    endless = f"import sys\nchunk = b'x' * (1 << 20)\nwhile True:\n    {write}\n"
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)
    thread = threading.Thread(target=sample)
    thread.start()
    try:
        whole = run(finite, mode, output_limit=1 << 20, timeout=60)
        cut = run(endless, mode, output_limit=1 << 20, timeout=1.0)
    finally:
        done.set()
        thread.join()
    assert (whole.finished, whole.truncated, len(getattr(whole, stream))) == (True, True, 1 << 20), whole.detail
    assert (cut.status, cut.truncated, len(getattr(cut, stream))) == ("timeout", True, 1 << 20)
    assert peak[0] - base < 48 << 20, f"parent grew by {(peak[0] - base) >> 20} MiB"


def test_unencodable_and_broken_source_fail_without_raising(mode):
    for source in ("x = '\ud800'\nprint(x)\n", "def f(:\n", "\x00"):
        result = run(source, mode)
        assert not result.finished and result.status == "failed", source


def test_memory_limit(mode):
    result = run("x = bytearray(2 << 30)\n", mode, memory_mb=256)
    assert not result.finished and "MemoryError" in result.detail


def test_mode_choice_and_the_one_time_warning(monkeypatch):
    monkeypatch.setenv("PLINTH_SANDBOX", "rlimits")
    assert sandbox.resolve_mode() == "rlimits"
    monkeypatch.setenv("PLINTH_SANDBOX", "jail")
    with pytest.raises(ConfigError, match=r"'jail' \(PLINTH_SANDBOX\): choose one of bwrap, rlimits, auto"):
        sandbox.resolve_mode()
    monkeypatch.delenv("PLINTH_SANDBOX")
    monkeypatch.setattr(sandbox, "_bwrap_problem", lambda: "bwrap is not installed")
    monkeypatch.setattr(sandbox, "_warned_once", [])
    with pytest.raises(ConfigError, match="sandbox mode bwrap: bwrap is not installed"):
        sandbox.resolve_mode("bwrap")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sandbox.run_python("pass\n").mode == "rlimits"
        assert sandbox.run_python("pass\n").mode == "rlimits"
    notes = [str(w.message) for w in caught if "plinth sandbox" in str(w.message)]
    assert len(notes) == 1 and "bwrap is not installed" in notes[0] and "weaker rlimits mode" in notes[0]


def test_a_bwrap_that_cannot_run_is_detected(tmp_path, monkeypatch):
    """Containers without user namespaces have a bwrap that fails: the probe runs a program in it, once."""
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    problem = sandbox._bwrap_problem.__wrapped__()
    assert problem == "bwrap did not run a program here: bwrap: No permissions to create new namespace"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert sandbox._bwrap_problem.__wrapped__() == "bwrap is not installed"


@pytest.fixture
def library():
    """A folder with a trusted module that imports what the program may not: ctypes (calling into libc at import,
    before the hook), subprocess, sockets; readable after a drop to uid 65534 (pytest's tmp_path is 0700)."""
    folder = tempfile.mkdtemp(prefix="plinth-preload-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "leaky.py")
    with open(path, "w") as fh:
        fh.write("import ctypes, ctypes.util, subprocess, socket\n"
                 "PID = ctypes.CDLL(None).getpid()\nlibc = ctypes.CDLL(None)\n")
    os.chmod(path, 0o644)
    yield folder
    shutil.rmtree(folder)


def test_preload_imports_a_library_before_the_hook(mode, library):
    result = run("import leaky, sys\nassert leaky.PID > 0\nprint('ctypes' in sys.modules)\n", mode,
                 preload=("leaky",), paths=[library])
    assert (result.finished, result.stdout) == (True, b"False\n"), result.stderr
    # without preload the same import is refused under the hook
    assert not run("import leaky\n", mode, paths=[library]).finished


def test_a_preloaded_library_does_not_open_the_hook(mode, library, tmp_path):
    outside = tmp_path / "out"
    outside.mkdir()
    target = str(outside / "x")
    for program in (
        "import ctypes",
        "import _ctypes",
        "import _posixsubprocess",
        "import subprocess",
        "import leaky\nleaky.libc.system(b'touch " + target + "')",
        "import leaky\nleaky.ctypes.CDLL(None)",
        "import leaky\nleaky.ctypes.string_at(id(1), 8)",
        "import leaky\nleaky.ctypes.c_char.from_address(id(1))",
        "import leaky\nleaky.ctypes.pythonapi.Py_GetVersion",
        f"import leaky\nleaky.subprocess.run(['touch', {target!r}])",
        "import leaky, os\nr, w = os.pipe()\n"
        f"leaky.subprocess._fork_exec(['touch', {target!r}], [b'/usr/bin/touch'], True, (), None, None, -1, -1, "
        "-1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)\nos.wait()",
        "import leaky, sys, importlib\nsys.modules['subprocess'] = leaky.subprocess\n"
        f"importlib.reload(leaky.subprocess).run(['touch', {target!r}])",
        "import leaky\nleaky.socket.socket()",
        f"import leaky\nopen({target!r}, 'w').write('x')",
    ):
        result = run(program + "\n", mode, preload=("leaky",), paths=[library])
        assert not result.finished, program
        if mode == "rlimits":  # the hook is the barrier there (in bwrap the host's /tmp is not even visible)
            assert "PermissionError: sandbox:" in result.stderr.decode(), (program, result.stderr)
        time.sleep(0.05)
        assert os.listdir(outside) == [], program


def test_preload_refuses_modules_without_audit_events(mode, library):
    with open(os.path.join(library, "interp.py"), "w") as fh:
        fh.write("import _xxsubinterpreters\n")
    os.chmod(os.path.join(library, "interp.py"), 0o644)
    result = run("pass\n", mode, preload=("interp",), paths=[library])
    assert not result.finished and "raise no audit event" in result.detail
    with pytest.raises(ValueError, match="not a module name"):
        sandbox.run_python("pass\n", preload=("os; import x",))
    with pytest.raises(ValueError, match="not absolute"):
        sandbox.run_python("pass\n", paths=["relative"])
