"""Training checkpoints in the stage's work folder, written so a kill -9 at any moment leaves the last complete one.

    work/checkpoint-<step>/rank-<r>.pt     each rank's runner.state_dict() (torch.save, temp file + fsync + rename)
    work/checkpoint-<step>/trainer.json    the trainer's state (rank 0): epoch, step, per-epoch sums and timings
    work/checkpoint-<step>/complete.json   written by rank 0 after every rank has written: only then is it resumed
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import torch

from plinth import ConfigError
from plinth.rundir import read_json, write_bytes_atomic, write_json_atomic

MARKER = "complete.json"


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _save_atomic(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def complete_checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    found = []
    for folder in Path(work_dir).glob("checkpoint-*"):
        step = folder.name.split("-", 1)[1]
        if step.isdigit() and (folder / MARKER).exists():
            found.append((int(step), folder))
    return sorted(found)


def save(work_dir: Path, step: int, rank: int, world: int, runner_state: dict[str, Any],
         trainer_state: dict[str, Any], keep: int) -> Path:
    """Collective: every rank calls it at the same step."""
    folder = Path(work_dir) / f"checkpoint-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    _save_atomic(runner_state, folder / f"rank-{rank}.pt")
    if rank == 0:
        write_json_atomic(folder / "trainer.json", trainer_state)
    _barrier()
    if rank == 0:
        write_json_atomic(folder / MARKER, {"step": step, "world_size": world})
        for _, old in complete_checkpoints(work_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return folder


def load_latest(work_dir: Path, rank: int, world: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(runner state of this rank, trainer state) of the newest complete checkpoint, or None."""
    found = complete_checkpoints(work_dir)
    if not found:
        return None
    step, folder = found[-1]
    marker = read_json(folder / MARKER)
    if marker.get("world_size") != world:
        raise ConfigError(f"{folder}: written by {marker.get('world_size')} processes, this run has {world}; "
                          "resume with the same strategy, or remove the work folder to start over")
    state = torch.load(folder / f"rank-{rank}.pt", map_location="cpu", weights_only=True)
    return state, read_json(folder / "trainer.json")
