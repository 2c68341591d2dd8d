"""The step runner: the seam between the `pointcloud` trainer and a parallel strategy (contract; /work/notes/seam.md).

The trainer owns config, data, the model's construction, loss, optimizer hyper-parameters, the LR schedule,
epochs/steps, checkpoint files, resume, progress, metrics and the output artifact. A step runner owns how batches
become gradients and updates: here locally or through DDP; in `plinth_sparsepipe.pipe` as a pipeline schedule.
The trainer gets one with

    make = getattr(ctx.strategy, "step_runner", None)
    runner = make(model, spec, ctx) if make else LocalRunner(model, spec, ctx)

`model` is the whole model, freshly initialised from the trainer's seed, on the CPU (identical on every rank).
`spec` is a `StepSpec` (below). A runner provides:

    runner.reads_data -> bool           False on ranks that read no data (pipeline ranks past stage 0)
    runner.data_shard() -> (i, n)       this rank reads shard i of n disjoint shards of every epoch's order
                                        (local (0, 1); DDP (rank, world); pipeline (replica of stage 0, replicas)).
                                        n must be the same on EVERY rank, readers or not: each rank derives the
                                        steps per epoch from it (batch_size // n samples per reader and step)
    runner.train(batches, steps, first_step, on_step)
        runs exactly `steps` optimizer steps, consuming exactly one batch per step from the iterator `batches`
        (None where reads_data is False), and returns with nothing in flight (a pipeline drains), so the trainer
        can checkpoint between calls. Before optimizer step number s (0-based, counted over the whole run from
        `first_step`) it sets each parameter group's lr to its base lr * spec.lr_factor(s). After each step it
        calls on_step(StepStats) at least on rank 0 (every DDP rank; a pipeline's rank 0, which gets the last
        stage's values), with loss and metric sums already reduced over the data-parallel ranks (seam.md).
        A Batch is (input, target): input a SparseTensor (or a dense [B, C, X, Y, Z] tensor), target int64
        ([B] labels, or per-voxel labels [N] for segmentation); a pipeline carries the target to its last stage.
    runner.optimizer                    the optimizer of the parameters this rank holds
    runner.state_dict() / load_state_dict(state)
                                        everything THIS rank needs to resume exactly: its model part, optimizer
                                        state, RNG states (and a pipeline's stashed weight versions); torch.save-able
    runner.full_model_state() -> dict[str, Tensor] | None
                                        the whole model's state_dict on rank 0 (None elsewhere): the output artifact
    runner.close()

Checkpoints: the trainer writes each rank's `state_dict()` to `work_dir/checkpoint-<step>/rank-<r>.pt`, rank 0 adds
`trainer.json`, and after a barrier rank 0 writes `complete.json`: only a folder with it is resumed from.
Models: `model.blocks()` lists (name, module) in forward order; `model.pipelinable` is False when forward is not
the composition of the blocks (the U-Net), and a pipeline strategy refuses such a model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch

Batch = tuple[Any, torch.Tensor]


@dataclass
class StepSpec:
    """What the trainer tells a runner about one training run."""

    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]  # (model output, target) -> scalar mean loss
    make_optimizer: Callable[[Any], torch.optim.Optimizer]  # parameters -> optimizer (lr = the base lr)
    metrics_fn: Callable[[Any, torch.Tensor], dict[str, float]]  # (output, target) -> sums, e.g. correct, count
    lr_factor: Callable[[int], float]  # optimizer step index (0-based, whole run) -> multiplier of the base lr
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    micro_batches: int = 1  # local runs: 1; a pipeline may split each batch
    task: str = "classification"


@dataclass
class StepStats:
    """One optimizer step as reported to the trainer (reduced over data-parallel ranks)."""

    step: int  # optimizer steps done so far in the run (first_step + i + 1)
    loss: float  # mean over data-parallel ranks
    lr: float  # learning rate of the first parameter group at this step
    sums: dict[str, float]  # metric sums over data-parallel ranks (e.g. correct, count)


class StepRunner(Protocol):
    optimizer: torch.optim.Optimizer
    reads_data: bool

    def data_shard(self) -> tuple[int, int]: ...

    def train(self, batches: Iterator[Batch] | None, steps: int, first_step: int,
              on_step: Callable[[StepStats], None]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def full_model_state(self) -> dict[str, torch.Tensor] | None: ...

    def close(self) -> None: ...


def rng_state() -> dict[str, Any]:
    """The RNG states a training step draws from (dropout, and anything using Python's `random`)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def move(x: Any, device: torch.device) -> Any:
    """A batch input or target on `device` (SparseTensor and tensors)."""
    return x.to(device)


def dist_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class LocalRunner:
    """One process, or one DDP rank: the model wrapped by `ctx.strategy.wrap_model` (DDP under `ddp`)."""

    reads_data = True

    def __init__(self, model: torch.nn.Module, spec: StepSpec, ctx: Any):
        self.spec = spec
        self.model = model.to(spec.device)
        wrap = getattr(ctx.strategy, "wrap_model", None)
        self.module = wrap(self.model, ctx) if wrap is not None else self.model
        self.optimizer = spec.make_optimizer(self.model.parameters())
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.rank, self.world = dist_world()

    def data_shard(self) -> tuple[int, int]:
        return self.rank, self.world

    def train(self, batches: Iterator[Batch] | None, steps: int, first_step: int,
              on_step: Callable[[StepStats], None]) -> None:
        if batches is None:
            raise ValueError("LocalRunner.train: this rank reads data, but no batches were given")
        self.module.train()
        spec = self.spec
        for i in range(steps):
            try:
                inputs, target = next(batches)
            except StopIteration:
                raise RuntimeError(f"LocalRunner.train: batches ran out after {i} of {steps} steps") from None
            inputs, target = move(inputs, spec.device), move(target, spec.device)
            factor = spec.lr_factor(first_step + i)
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * factor
            output = self.module(inputs)
            loss = spec.loss_fn(output, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                sums = spec.metrics_fn(output, target)
            on_step(self._reduced(first_step + i + 1, loss.detach(), sums))

    def _reduced(self, step: int, loss: torch.Tensor, sums: dict[str, float]) -> StepStats:
        names = sorted(sums)
        values = torch.tensor([float(loss), *[float(sums[k]) for k in names]], dtype=torch.float64)
        if self.world > 1:
            import torch.distributed as dist

            values = values.to(self.spec.device)
            dist.all_reduce(values)
            values = values.cpu()
            values[0] /= self.world
        return StepStats(step=step, loss=float(values[0]), lr=float(self.optimizer.param_groups[0]["lr"]),
                         sums={k: float(v) for k, v in zip(names, values[1:])})

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])

    def full_model_state(self) -> dict[str, torch.Tensor] | None:
        if self.rank != 0:
            return None
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def close(self) -> None:
        self.module = self.model
