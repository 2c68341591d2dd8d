"""The profiler: per block of a model, on this device at one batch size, what the planner needs (profile.py).

For each block, in model order: forward time, backward time (with the optimizer step of the block's parameters,
which a pipeline stage also runs once per batch under 1F1B), bytes of its output features and coordinates (what
crosses a stage boundary after it), bytes of its parameters, and `restart_s`: what a cut after the block costs the
next block, which then receives a sparse tensor with an empty cache and rebuilds the kernel maps it would have
reused (the next block's forward on a fresh copy of its input minus on a copy sharing the cache, both without
autograd, measured before its real forward so they do not warm that one's cache).

Each iteration runs the blocks one by one on a detached copy of the previous block's output, as a stage does, so
every block's backward is timed alone; the loss is counted in the last block. `warmup` iterations are run first
(kernel-map caches, allocator, lazy imports) and the times of the next `iterations` are averaged. On a CPU the clock is this thread's CPU time (one thread, as the
pipeline's ranks run, and unaffected by other processes on the machine; the emulation scales the same clock); on
CUDA it is the wall time after `torch.cuda.synchronize()`. The model is copied first, so its batch-norm statistics
and weights are left as they were.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Sequence

import torch

from ..sparse.tensor import CoordinateCache, SparseTensor
from .chain import chain_blocks
from .profile import LayerProfile, Profile


class _Clock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.thread_time()


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
    """Extra forward time of `block` when its input arrives with an empty cache (a stage boundary before it)."""
    shared = SparseTensor(x.coords, x.feats, x.stride, batch_size=x.batch_size,
                          cache=CoordinateCache(dict(x.cache.coords), dict(x.cache.kmaps)))
    fresh = SparseTensor.from_tensors(*x.to_tensors())
    times = []
    with torch.no_grad():
        for inp in (fresh, shared):
            t0 = clock.now()
            block(inp.replace(inp.feats.clone()))
            times.append(clock.now() - t0)
    return max(0.0, times[0] - times[1])


def profile_model(model: torch.nn.Module, batches: Sequence[tuple[Any, torch.Tensor]],
                  loss_fn: Callable[[Any, torch.Tensor], torch.Tensor], *, device: torch.device | str = "cpu",
                  make_optimizer: Callable[[Any], torch.optim.Optimizer] | None = None, warmup: int = 2,
                  iterations: int = 5, device_type: str = "cpu", model_name: str | None = None) -> Profile:
    """Profile `model` on `batches` (cycled through warm-up + measured iterations); see the module docstring."""
    if iterations < 1 or warmup < 0 or not batches:
        raise ValueError("profile_model needs iterations >= 1, warmup >= 0 and at least one batch")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).train()
    blocks = chain_blocks(model)
    make_optimizer = make_optimizer or (lambda params: torch.optim.SGD(params, lr=0.0))
    optimizers = [make_optimizer(list(b.parameters())) if any(True for _ in b.parameters()) else None
                  for _, b in blocks]
    n = len(blocks)
    fwd, bwd, feat, coord, restart = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    clock = _Clock(device)
    sizes = set()
    for it in range(warmup + iterations):
        x, target = batches[it % len(batches)]
        x, target = x.to(device), target.to(device)
        sizes.add(x.batch_size if isinstance(x, SparseTensor) else int(x.shape[0]))
        measured = it >= warmup
        inputs, outputs = [], []
        for i, (_, block) in enumerate(blocks):
            xi = x if i == 0 else _detached(x)
            if measured and i > 0 and isinstance(xi, SparseTensor):
                restart[i - 1] += _restart(block, xi, clock)
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
        for i in range(n - 1, -1, -1):
            y = outputs[i]
            t0 = clock.now()
            torch.autograd.backward(y.feats if isinstance(y, SparseTensor) else y, grad)
            if optimizers[i] is not None:
                optimizers[i].step()
                optimizers[i].zero_grad(set_to_none=True)
            t1 = clock.now()
            if measured:
                bwd[i] += t1 - t0
            if i > 0:
                xi = inputs[i]
                leaf = xi.feats if isinstance(xi, SparseTensor) else xi
                grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    if len(sizes) != 1:
        raise ValueError(f"profile batches must all have one batch size, got {sorted(sizes)}")
    layers = []
    for i, (name, block) in enumerate(blocks):
        params = sum(p.numel() * p.element_size() for p in block.parameters())
        layers.append(LayerProfile(
            name=name, forward_s=fwd[i] / iterations, backward_s=bwd[i] / iterations,
            output_feature_bytes=feat[i] / iterations, output_coordinate_bytes=coord[i] / iterations,
            parameter_bytes=float(params), restart_s=restart[i] / iterations))
    name = model_name or (model.config()["name"] if hasattr(model, "config") else type(model).__name__)
    meta = {"warmup": warmup, "iterations": iterations, "device": str(device), "threads": torch.get_num_threads(),
            "clock": "cuda-synchronised wall" if device.type == "cuda" else "thread CPU time",
            "backward_includes": "the optimizer step of the block's parameters",
            "torch": torch.__version__, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    return Profile(model=name, device_type=device_type, batch_size=sizes.pop(), source="measured", meta=meta,
                   layers=layers)
