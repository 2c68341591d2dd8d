"""The profiler: per block of a model, on this device at one batch size, what the planner needs (profile.py).

For each block, in model order: forward time, backward time, update time (the optimizer step of the block's
parameters, which a stage runs after every batch under 1F1B and once per mini-batch under GPipe; pass the
optimizer the training uses as `make_optimizer`), bytes of its output features and coordinates (what crosses a
stage boundary after it), bytes of its parameters, and `restart_s`: what a cut after the block costs the next
block, which then starts a stage: it receives a sparse tensor with an empty cache and rebuilds the kernel maps it
would have reused, first in a span of compute (the next block's forward on a fresh copy of its input, first in a
span, minus on a copy sharing the cache right after it, both without autograd, measured after the iteration's
update).

Each iteration runs as a stage runs a micro-batch, in three spans of compute: the forward of every block, the
backward of every block, the update; each block is timed on its own inside them. It runs the blocks one by one on a
detached copy of the previous block's output, as a stage does, so every block's backward is timed alone; the loss is
counted in the last block. Every iteration's input is a fresh copy of its batch (coordinates and features, no
kernel-map cache), as a batch from the data loader arrives, so the first blocks build their maps in every iteration
as they do in training. `warmup` iterations are run first (allocator, lazy imports) and the times of the next
`iterations` are averaged. On a CPU the clock is this thread's CPU time (one thread, as the pipeline's ranks run,
and unaffected by other processes on the machine; the emulation scales the same clock); on CUDA it is the wall time
after `torch.cuda.synchronize()`.

`emulate_speed` s < 1 profiles a block the way an emulated device of speed s computes it (emulation.py): every span
(forward, backward, update, each restart measurement) runs inside the runtime's own `RankClock`, which sleeps after
it until its time / s has passed, the runtime's sleep-then-compute cadence; the recorded times are still the blocks'
own CPU time. A process that computes in short bursts between long sleeps finds its caches cold and takes more CPU
time for the same work than back to back; profiled this way, the profile holds that cost and the planner's
prediction (profile / speed) is the runtime's emulated time. The model is copied first, so its batch-norm statistics
and weights are left as they were.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Sequence

import torch

from ..sparse.tensor import CoordinateCache, SparseTensor
from .chain import chain_blocks
from .emulation import RankClock
from .profile import LayerProfile, Profile


class _Clock:
    """The runtime's clock (emulation included) around a span of work; `now()` reads its base clock inside one."""

    def __init__(self, device: torch.device, speed: float = 1.0):
        self.rank_clock = RankClock(speed, device)
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.thread_time()

    def span(self):
        """One piece of compute as a stage runs it: under emulation, followed by the runtime's sleep."""
        return self.rank_clock.compute()


def _detached(x: Any) -> Any:
    """The next block's input: the same values (and kernel-map cache), a fresh leaf for its own backward."""
    if isinstance(x, SparseTensor):
        feats = x.feats.detach()
        return x.replace(feats.requires_grad_(True) if feats.is_floating_point() else feats)
    return x.detach().requires_grad_(True) if x.is_floating_point() else x.detach()


def _output_bytes(y: Any) -> tuple[float, float]:
    if isinstance(y, SparseTensor):
        coords = y.coords.numel() * y.coords.element_size() + 8 * (y.batch_size + 1)  # coords + batch offsets
        return float(y.feats.numel() * y.feats.element_size()), float(coords)
    return float(y.numel() * y.element_size()), 0.0


def _restart(block: torch.nn.Module, x: SparseTensor, clock: _Clock) -> float:
    """Extra forward time of `block` when it starts a stage: its input arrives with an empty cache and, under
    emulation, after a pause (the stage waited or slept). Its forward on a fresh copy of the input, first in a span,
    minus its forward on a copy sharing the cache right after (warm), both without autograd."""
    shared = SparseTensor(x.coords, x.feats, x.stride, batch_size=x.batch_size,
                          cache=CoordinateCache(dict(x.cache.coords), dict(x.cache.kmaps)))
    fresh = SparseTensor.from_tensors(*x.to_tensors())
    times = []
    with torch.no_grad(), clock.span():
        for inp in (fresh, shared):
            inp = inp.replace(inp.feats.clone())
            t0 = clock.now()
            block(inp)
            times.append(clock.now() - t0)
    return max(0.0, times[0] - times[1])


def profile_model(model: torch.nn.Module, batches: Sequence[tuple[Any, torch.Tensor]],
                  loss_fn: Callable[[Any, torch.Tensor], torch.Tensor], *, device: torch.device | str = "cpu",
                  make_optimizer: Callable[[Any], torch.optim.Optimizer] | None = None, warmup: int = 2,
                  iterations: int = 5, device_type: str = "cpu", model_name: str | None = None,
                  emulate_speed: float = 1.0) -> Profile:
    """Profile `model` on `batches` (cycled through warm-up + measured iterations); see the module docstring."""
    if iterations < 1 or warmup < 0 or not batches:
        raise ValueError("profile_model needs iterations >= 1, warmup >= 0 and at least one batch")
    if not 0 < emulate_speed <= 1.0:
        raise ValueError(f"emulate_speed must be in (0, 1], got {emulate_speed}")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).train()
    blocks = chain_blocks(model)
    make_optimizer = make_optimizer or (lambda params: torch.optim.SGD(params, lr=0.0))
    optimizers = [make_optimizer(list(b.parameters())) if any(True for _ in b.parameters()) else None
                  for _, b in blocks]
    n = len(blocks)
    fwd, bwd, upd, feat, coord, restart = ([0.0] * n for _ in range(6))
    clock = _Clock(device, emulate_speed)
    sizes = set()
    for it in range(warmup + iterations):
        x, target = batches[it % len(batches)]
        x, target = x.to(device), target.to(device)
        if isinstance(x, SparseTensor):  # a new batch: no kernel maps yet
            x = SparseTensor.from_tensors(*x.to_tensors())
        sizes.add(x.batch_size if isinstance(x, SparseTensor) else int(x.shape[0]))
        measured = it >= warmup
        inputs, outputs = [], []
        with clock.span():  # the forward of every block, as one stage would run it
            for i, (_, block) in enumerate(blocks):
                xi = x if i == 0 else _detached(x)
                t0 = clock.now()
                y = block(xi)
                if i == n - 1:
                    y = loss_fn(y, target)
                t1 = clock.now()
                if measured:
                    fwd[i] += t1 - t0
                    if i < n - 1:
                        f, c = _output_bytes(y)
                        feat[i] += f
                        coord[i] += c
                inputs.append(xi)
                outputs.append(y)
                x = y
        grad = None
        with clock.span():  # the backward, last block first
            for i in range(n - 1, -1, -1):
                y = outputs[i]
                t0 = clock.now()
                torch.autograd.backward(y.feats if isinstance(y, SparseTensor) else y, grad)
                t1 = clock.now()
                if measured:
                    bwd[i] += t1 - t0
                if i > 0:
                    xi = inputs[i]
                    leaf = xi.feats if isinstance(xi, SparseTensor) else xi
                    grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        with clock.span():  # the update
            for i, opt in enumerate(optimizers):
                if opt is None:
                    continue
                t0 = clock.now()
                opt.step()
                t1 = clock.now()
                opt.zero_grad(set_to_none=True)
                if measured:
                    upd[i] += t1 - t0
        if measured:  # what a cut before each block costs it
            for i in range(1, n):
                if isinstance(inputs[i], SparseTensor):
                    restart[i - 1] += _restart(blocks[i][1], inputs[i], clock)
    if len(sizes) != 1:
        raise ValueError(f"profile batches must all have one batch size, got {sorted(sizes)}")
    layers = []
    for i, (name, block) in enumerate(blocks):
        params = sum(p.numel() * p.element_size() for p in block.parameters())
        layers.append(LayerProfile(
            name=name, forward_s=fwd[i] / iterations, backward_s=bwd[i] / iterations,
            update_s=upd[i] / iterations,
            output_feature_bytes=feat[i] / iterations, output_coordinate_bytes=coord[i] / iterations,
            parameter_bytes=float(params), restart_s=restart[i] / iterations))
    name = model_name or (model.config()["name"] if hasattr(model, "config") else type(model).__name__)
    meta = {"warmup": warmup, "iterations": iterations, "device": str(device), "threads": torch.get_num_threads(),
            "clock": "cuda-synchronised wall" if device.type == "cuda" else "thread CPU time",
            "update": "update_s, the optimizer step of the block's parameters (not in backward_s)",
            "inputs": "a fresh copy of each batch (kernel maps built in every iteration)",
            "emulated_speed": emulate_speed,
            "torch": torch.__version__, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    return Profile(model=name, device_type=device_type, batch_size=sizes.pop(), source="measured", meta=meta,
                   layers=layers)
