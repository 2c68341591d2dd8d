"""Multi-process tests of the pipeline runtime: a launcher for real gloo processes, tiny sparse models and data.

`launch([scenario, ...], world, out)` runs `pipe_scenarios.py OUT WORLD SCENARIO...`: one Python process imports
torch once (many seconds of CPU on a shared machine) and, scenario after scenario, forks `world` ranks with
torchrun's environment (`plinth_sparsepipe.pipe.forked`), one thread each. Each rank's output goes to
OUT/<scenario>/log-<rank>.txt, its exit status and time to OUT/<scenario>/ranks.json. Everything is killed at the
deadline, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "pipe_scenarios.py"


@dataclass
class Proc:
    rank: int
    returncode: int | None  # None: still running at the deadline (killed)
    output: str
    seconds: float | None  # from the fork to its exit


def launch(scenarios: list[str], world: int, out: Path, deadline_s: float = 90.0) -> dict[str, list[Proc]]:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    parent = subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(world), *scenarios], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text, _ = parent.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        os.killpg(parent.pid, signal.SIGKILL)
        text, _ = parent.communicate()
    result = {}
    for scenario in scenarios:
        folder = out / scenario.replace(":", "-")
        ranks = json.loads((folder / "ranks.json").read_text()) if (folder / "ranks.json").exists() else []
        status = {r["rank"]: r for r in ranks}
        procs = []
        for rank in range(world):
            log = folder / f"log-{rank}.txt"
            rec = status.get(rank, {})
            procs.append(Proc(rank, rec.get("returncode"), log.read_text(errors="replace") if log.exists() else "",
                              rec.get("seconds")))
        if len(status) < world:
            procs[0].output = f"launcher output:\n{text.decode(errors='replace')}\n{procs[0].output}"
        result[scenario] = procs
    return result


def folder_of(out: Path, scenario: str) -> Path:
    return out / scenario.replace(":", "-")


def explain(procs: list[Proc]) -> str:
    return "\n".join(f"--- rank {p.rank}: exit {p.returncode} after {p.seconds} s\n{p.output[-3000:]}"
                     for p in procs)


# -- tiny models and data (built the same way in every process) ---------------------------------------------
def tiny_blocks(cin: int = 1, classes: int = 3, bn: bool = True, seed: int = 0) -> "OrderedDict":
    """conv1 (3^3 submanifold) / pool1 (2^3 max) / conv2 / gpool (global max -> dense) / fc: a chain of blocks."""
    import torch
    from torch import nn

    from plinth_sparsepipe.sparse import nn as spnn

    torch.manual_seed(seed)

    def conv(a, b):
        layers = [spnn.Conv3d(a, b, 3)] + ([spnn.BatchNorm(b)] if bn else []) + [spnn.ReLU()]
        return nn.Sequential(*layers)

    return OrderedDict(conv1=conv(cin, 4), pool1=spnn.MaxPool3d(2, 2), conv2=conv(4, 6),
                       gpool=spnn.GlobalMaxPool(), fc=nn.Linear(6, classes))


def clouds(count: int, seed: int, side: int = 8, cin: int = 1, classes: int = 3):
    """`count` random clouds (unique voxels in a side^3 box, 6..30 each) with labels."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        n = int(torch.randint(6, 31, (1,), generator=gen))
        cells = torch.randperm(side ** 3, generator=gen)[:n]
        coords = torch.stack([cells // (side * side), (cells // side) % side, cells % side], 1).int()
        feats = torch.rand(n, cin, generator=gen) + 0.5
        out.append((coords, feats, int(torch.randint(0, classes, (1,), generator=gen))))
    return out


def micro_batch(items):
    """A list of (coords, feats, label) -> (SparseTensor, labels [B])."""
    import torch

    from plinth_sparsepipe.sparse import sparse_collate

    return sparse_collate([(c, f) for c, f, _ in items]), torch.tensor([y for _, _, y in items])


def step_micro_batches(step: int, n: int, per_micro: int = 2, seed: int = 100):
    """The n micro-batches of one step, the same in every process (independent of any pipeline code)."""
    data = clouds(n * per_micro, seed + step)
    return [micro_batch(data[i * per_micro:(i + 1) * per_micro]) for i in range(n)]


def expected_messages():
    """What rank 0 sends rank 1 in the comm check: sparse tensors of changing shape and dtype, dense, objects."""
    import torch

    from plinth_sparsepipe.pipe.comm import DENSE, OBJECT, SPARSE
    from plinth_sparsepipe.sparse import SparseTensor

    msgs = []
    for i, (n_clouds, cin, stride, dtype) in enumerate([(3, 1, 1, torch.float32), (1, 5, 2, torch.float64),
                                                         (4, 2, 4, torch.float16), (2, 3, 1, torch.float32)]):
        items = clouds(n_clouds, seed=10 + i, cin=cin)
        x, y = micro_batch(items)
        coords = torch.cat([x.coords[:, :1], x.coords[:, 1:] * stride], 1)
        x = SparseTensor(coords, x.feats.to(dtype), stride, batch_size=x.batch_size)
        target = y if i % 2 == 0 else torch.arange(len(x))  # per-cloud labels, or per-voxel labels
        msgs.append((SPARSE, x, target))
    empty = SparseTensor(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 3), 1, batch_size=0)
    msgs.append((SPARSE, empty, None))
    msgs.append((DENSE, torch.randn(4, 7, generator=torch.Generator().manual_seed(3)), torch.tensor([1, 0, 2, 1])))
    grid = torch.rand(2, 3, 5, 4, 6, generator=torch.Generator().manual_seed(4))  # the dense baseline's activations
    msgs.append((DENSE, grid, torch.tensor([2, 0])))
    msgs.append((OBJECT, {"loss_sum": 1.5, "sums": {"correct": 3.0}}, None))
    return msgs
