"""The run directory on disk: atomic writes, the manifest, and the lock that keeps two runs apart.

Every file the core and the plugins write whole goes through `atomic_path`/`open_atomic`/`write_*_atomic`: a
uniquely named temporary file in the same folder, fsync, the umask's mode, os.replace, then an fsync of the folder,
so a kill -9 or a power cut at any moment leaves either the old or the new content, never half of one, and two
writers of the same file never share a temporary name. The lock is an flock on
RUN_DIR/.lock: the kernel drops it when its process dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import RunLockedError

MANIFEST = "manifest.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a rename is an update of the folder, not of the file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network and FUSE file systems cannot fsync a folder: the rename still happened
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def replace_folder(tmp: Path, dest: Path) -> Path:
    """Put the finished folder `tmp` at `dest` (same file system), replacing what is there, so that a kill at any
    moment leaves the old folder or the new one at `dest` (or the old one beside it as `.NAME.old-*`), never
    nothing: its files are fsynced, the old folder is renamed aside (not deleted first), `tmp` renamed into place,
    the parent fsynced, and only then the old folder removed."""
    tmp, dest = Path(tmp), Path(dest)
    for f in tmp.rglob("*"):
        if f.is_file() and not f.is_symlink():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        if old is not None and not dest.exists():
            os.rename(old, dest)  # put the old folder back
        raise
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A unique temporary path beside `path` for code that writes a file itself (pyarrow, torch.save); on a
    clean exit it is fsynced, given the mode a plain open() would (0666 less the umask, not mkstemp's 0600),
    renamed over `path`, and the folder fsynced. On an exception the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def open_atomic(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """`with open_atomic(p) as fh: ...` writes a file that appears whole at `p` or not at all."""
    binary = "b" in mode
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding) as fh:
            yield fh


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with open_atomic(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR/manifest.json as a dict: {"stages": {id: record}} (empty if the run never started)."""
    data = read_json(Path(run_dir) / MANIFEST, default=None) or {}
    data.setdefault("stages", {})
    return data


class RunLock:
    """An exclusive, non-blocking lock on a run directory, held for the life of a `plinth run`."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.path.parent} is in use by pid {holder}; wait for it to finish or use "
                "another --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
