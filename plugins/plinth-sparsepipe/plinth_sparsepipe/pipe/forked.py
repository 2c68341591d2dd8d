"""Ranks on this machine by fork, for benchmarks and tests: `run_forked(world, fn, folder)`.

torchrun starts every rank as a new Python process, which imports torch again (seconds of CPU each on a small
machine). Forking one process that has imported everything gives the same ranks (the same torchrun environment,
each its own process and gloo connections) without that cost. The rendezvous store lives in a process of its own,
as in torchrun's agent, so it outlives any rank; and this process starts no thread, so a fork never copies a lock
that some thread held (the child would wait for it forever). Production runs use torchrun (`plinth run`).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class RankResult:
    rank: int
    returncode: int
    seconds: float  # from the fork to its exit
    value: Any  # what fn returned (None if it failed)
    log: Path  # its stdout and stderr
    error: str | None  # the first line of its exception, if any


def run_forked(world: int, fn: Callable[[int], Any], folder: Path, init_timeout_s: float = 60.0) -> list[RankResult]:
    """Fork `world` ranks; rank r sets torchrun's environment, initialises the default gloo group, calls fn(r) and
    exits. Waits for all of them and returns how each ended."""
    folder.mkdir(parents=True, exist_ok=True)
    store_pid, port = _start_store()
    started, pids = time.monotonic(), {}
    try:
        for rank in range(world):
            pid = os.fork()
            if pid == 0:  # the rank: never returns
                _rank_main(rank, world, port, fn, folder, init_timeout_s)
            pids[pid] = rank
        ended = {}
        for pid in list(pids):
            _, status = os.waitpid(pid, 0)
            ended[pids.pop(pid)] = (os.waitstatus_to_exitcode(status), time.monotonic() - started)
    finally:
        for pid in pids:  # only when this process is interrupted
            os.kill(pid, signal.SIGKILL)
        os.kill(store_pid, signal.SIGKILL)
        os.waitpid(store_pid, 0)
    results = []
    for rank in range(world):
        code, seconds = ended[rank]
        value_file, error_file = folder / f"value-{rank}.pkl", folder / f"error-{rank}.txt"
        value = pickle.loads(value_file.read_bytes()) if code == 0 and value_file.exists() else None
        error = error_file.read_text().splitlines()[0] if error_file.exists() else None
        results.append(RankResult(rank, code, seconds, value, folder / f"log-{rank}.txt", error))
    (folder / "ranks.json").write_text(json.dumps([{"rank": r.rank, "returncode": r.returncode,
                                                    "seconds": r.seconds, "error": r.error} for r in results]))
    return results


def _start_store() -> tuple[int, int]:
    """Fork the process that hosts the rendezvous store; (its pid, the store's port)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            import torch.distributed as dist

            store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
            os.write(write, str(store.port).encode())
            os.close(write)
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    os.close(write)
    port = int(os.read(read, 32).decode() or 0)
    os.close(read)
    if not port:
        raise RuntimeError("the rendezvous store process did not start")
    return pid, port


def _rank_main(rank: int, world: int, port: int, fn, folder: Path, init_timeout_s: float) -> None:
    from datetime import timedelta

    code = 1
    try:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
        log = os.open(folder / f"log-{rank}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(seconds=init_timeout_s))
        try:
            value = fn(rank)
            (folder / f"value-{rank}.pkl").write_bytes(pickle.dumps(value))
            dist.barrier()
            code = 0
        except BaseException as exc:  # noqa: BLE001 - recorded for the parent, then the rank exits 1
            (folder / f"error-{rank}.txt").write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
