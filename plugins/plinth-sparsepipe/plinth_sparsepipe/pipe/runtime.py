"""One rank's share of a hybrid pipeline: its stage's blocks, optimizer, schedule, messages and clock.

Every rank runs the op list `schedules.build` gives it (F, B, U, E; see schedules.py). Stage 0's replicas read
their micro-batches from the data; later stages receive activations (and the target, which travels with them to
the last stage) from the previous stage's replica that ran the micro-batch, and send the input's gradient back.
The last stage computes the loss; every micro-batch's loss is scaled by 1 / (micro-batches per step), so the
gradients summed over a step equal those of one process accumulating the same micro-batches. Replicas of a stage
all-reduce (sum) their gradients in their own process group before each update, and average their batch-norm
running statistics at the end of each step; each micro-batch is normalised with its own statistics, as in one
process. At the end of a step the last stage's loss and metric sums go to rank 0, which reports the step.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..sparse.tensor import SparseTensor
from .comm import (DENSE, GRAD, OBJECT, SPARSE, TAG_BACKWARD, TAG_FORWARD, TAG_OBJECT, Inbox, Outbox,
                   PeerFailure, _short)
from .emulation import RankClock
from .faults import Liveness, PipelineFault, arm_exit
from .schedules import Layout, Op, build, divisibility_problem, local_micro_batches, warmup
from .stash import WeightStash

RANK_STATE_FORMAT = "plinth-sparsepipe-rank/1"


def make_stage_groups(layout: Layout, timeout_s: float) -> dict[int, Any]:
    """A process group per replicated stage (collective: every rank creates every group, in stage order)."""
    groups = {}
    for s, ranks in enumerate(layout.stage_ranks):
        if len(ranks) > 1:
            groups[s] = dist.new_group(list(ranks), timeout=timedelta(seconds=timeout_s))
    return groups


def make_link_groups(layout: Layout, timeout_s: float) -> dict[tuple[int, int, int], Any]:
    """(src, dst, tag) -> a process group of the two ranks for each stream between neighbouring stages: activations
    forward, gradients back, each in its own group. Under NCCL a pair's messages share one stream and ignore tags,
    so one group for both directions could deadlock (a send waits for its receive, queued behind the other
    direction's); PipeDream's runtime does the same. Collective: every rank creates every group, in one order."""
    links = {}
    timeout = timedelta(seconds=timeout_s)
    for s in range(layout.n_stages - 1):
        for a in layout.stage_ranks[s]:
            for b in layout.stage_ranks[s + 1]:
                links[(a, b, TAG_FORWARD)] = dist.new_group([a, b], timeout=timeout)
                links[(b, a, TAG_BACKWARD)] = dist.new_group([a, b], timeout=timeout)
    return links


def _root(x: Any) -> torch.Tensor:
    return x.feats if isinstance(x, SparseTensor) else x


def _leaf(x: Any) -> Any:
    """A received activation as a leaf whose gradient goes back to the previous stage."""
    _root(x).requires_grad_(True)
    return x


def _batch_size(x: Any) -> int:
    return x.batch_size if isinstance(x, SparseTensor) else int(x.shape[0])


class _SavedBytes:
    """Bytes autograd keeps for one micro-batch's backward (parameters excluded): activation memory."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.seen, self.nbytes = exclude, set(), 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen.add(ptr)
            self.nbytes += t.untyped_storage().nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


class StageRuntime:
    """Runs this rank's stage. `run(steps, first_step, source, on_step)` executes whole steps and returns with
    nothing in flight. Construction is collective (it creates the stages' process groups)."""

    def __init__(self, module: nn.Module, layout: Layout, rank: int, *, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
                 metrics_fn: Callable[[Any, torch.Tensor], dict[str, float]] | None = None,
                 schedule: str = "1f1b", per_reader: int = 1, timeout_s: float = 300.0, speed: float = 1.0,
                 device: torch.device | str = "cpu", lr_factor: Callable[[int], float] | None = None,
                 labels: list[str] | None = None, liveness: Liveness | None = None):
        self.module, self.layout, self.rank = module, layout, rank
        self.optimizer, self.loss_fn, self.metrics_fn = optimizer, loss_fn, metrics_fn
        self.schedule, self.timeout_s, self.labels, self.liveness = schedule, timeout_s, labels, liveness
        self.device = torch.device(device)
        self.lr_factor = lr_factor
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.stage = layout.stage_of(rank)
        self.replicas = layout.replicas(self.stage)
        self.is_last = self.stage == layout.n_stages - 1
        self.n = layout.replicas(0) * per_reader
        problem = divisibility_problem(layout, self.n, schedule)
        if problem:
            raise ValueError(problem)
        self.loss_scale = 1.0 / self.n
        self.groups = make_stage_groups(layout, timeout_s)
        self.group = self.groups.get(self.stage)
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.stash = WeightStash(module) if schedule == "1f1b" and warmup(layout, self.stage) > 0 else None
        # creating a group is collective over every process: only a layout that spans them all (as every plan's
        # does) gets its own links; a smaller one (tests run 2-rank layouts in 3 processes) shares the default group
        spans_world = dist.is_initialized() and dist.get_world_size() == layout.world_size
        self.links = make_link_groups(layout, timeout_s) if spans_world else {}
        self.outbox = Outbox(timeout_s, self.device,
                             links={(dst, tag): g for (src, dst, tag), g in self.links.items() if src == rank})
        self.inflight: dict[int, tuple[Any, Any, int | None, int]] = {}
        self.step_stats: dict[int, dict[str, Any]] = {}
        self.updates = 0
        self._inflight_bytes = 0
        self.speed = speed
        self.reset_measurements()

    def reset_measurements(self) -> None:
        """Start the counters `metrics()` reports afresh (the pipeline's state is untouched)."""
        self.clock = RankClock(self.speed, self.device)
        self.outbox.bytes_sent = {}
        self.counts: Counter = Counter()
        self.peaks = {"in_flight": 0, "activation_bytes": 0, "versions": 0}
        self.allreduce_bytes = 0
        self.wall_s = 0.0
        self.step_seconds: list[float] = []  # rank 0: wall time of each step (end to end)
        self.step_compute: list[float] = []  # this rank's compute in each step (busy time, for the bound)
        self.step_base: list[float] = []  # the same compute's own time (CPU time), before the emulation's waiting
        self.step_forwards: list[int] = []  # forwards this rank ran in each step
        self._compute_at_end = self._base_at_end = 0.0
        self._forwards_at_end = 0
        self.samples = 0

    # -- names ----------------------------------------------------------------------------------------------
    def describe(self, rank: int) -> str:
        s = self.layout.stage_of(rank)
        r = self.layout.replicas(s)
        rep = f", replica {self.layout.replica_of(rank)} of {r}" if r > 1 else ""
        label = f", {self.labels[s]}" if self.labels else ""
        return f"rank {rank} (stage {s}{rep}{label})"

    # -- one epoch ------------------------------------------------------------------------------------------
    def run(self, steps: int, first_step: int = 0, source: Iterator[tuple[Any, torch.Tensor]] | None = None,
            on_step: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Run steps first_step .. first_step + steps - 1. `source` yields this rank's micro-batches (stage 0
        only); `on_step` gets each step's report on rank 0: step, loss, sums, samples, seconds, lr."""
        if self.stage == 0 and source is None:
            raise ValueError(f"{self.describe(self.rank)} reads the data but was given no micro-batches")
        ops = build(self.schedule, self.layout, self.rank, first_step, steps, self.n)
        t0 = self._step_t0 = time.perf_counter()
        inboxes = self._open_inboxes(first_step, steps)
        failed = False
        if self.liveness is not None:
            self.liveness.start()
        try:
            for op in ops:
                if self.liveness is not None:
                    self.liveness.mark(str(op))
                self._do(op, source, on_step)
            try:
                with self._waiting():
                    self.outbox.flush()
            except PeerFailure as exc:
                raise self._fault(exc, "waiting for its last sends to be received") from None
            for box in inboxes:
                if box.received != box.count:
                    raise PipelineFault(f"{self.describe(self.rank)}: took {box.received} of the {box.count} "
                                        f"messages rank {box.src} sends (a schedule bug)")
        except BaseException as exc:
            failed = True
            if self.liveness is not None:
                self.liveness.report(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            raise
        finally:
            if self.liveness is not None:
                self.liveness.stop()
            if failed:
                arm_exit()
            self.wall_s += time.perf_counter() - t0

    def _do(self, op: Op, source, on_step) -> None:
        if op.kind == "F":
            self._forward(op.g, source)
        elif op.kind == "B":
            self._backward(op.g)
        elif op.kind == "U":
            self._update(op.step)
        else:
            self._end_step(op.step, on_step)

    def _open_inboxes(self, first_step: int, steps: int) -> list[Inbox]:
        L, s = self.layout, self.stage
        mine = local_micro_batches(L, self.rank, first_step, steps, self.n)
        self.act_in, self.grad_in, self.stats_in = {}, {}, {}
        if s > 0:
            for src, count in Counter(L.owner(s - 1, g) for g in mine).items():
                self.act_in[src] = Inbox(src, TAG_FORWARD, count, self.timeout_s, self.device, "activations",
                                         group=self.links.get((src, self.rank, TAG_FORWARD)))
        if not self.is_last:
            for src, count in Counter(L.owner(s + 1, g) for g in mine).items():
                self.grad_in[src] = Inbox(src, TAG_BACKWARD, count, self.timeout_s, self.device, "gradients",
                                          group=self.links.get((src, self.rank, TAG_BACKWARD)))
        if self.rank == 0:
            for q in L.stage_ranks[-1]:
                if q != 0:
                    self.stats_in[q] = Inbox(q, TAG_OBJECT, steps, self.timeout_s, "cpu", "step statistics")
        return [*self.act_in.values(), *self.grad_in.values(), *self.stats_in.values()]

    # -- faults ---------------------------------------------------------------------------------------------
    def _fault(self, exc: PeerFailure, doing: str) -> PipelineFault:
        peer = self.describe(exc.peer)
        if exc.reason == "timeout":
            why = (f"nothing came within timeout_s = {self.timeout_s:g} s: {peer} hangs, died without closing "
                   "its connection, or is slower than the timeout allows")
        elif exc.reason == "closed":
            why = self._gone(exc)
        else:
            why = f"{peer} sent something unexpected: {exc.detail}"
        return PipelineFault(f"{self.describe(self.rank)}, {doing}: {why}{self._diagnosis()}")

    def _gone(self, exc: PeerFailure) -> str:
        """Why a peer's connection closed: its watchdog ended it for hanging (it recorded so), or it died."""
        peer = self.describe(exc.peer)
        hung = self.liveness.hung(exc.peer) if self.liveness is not None else None
        if hung is not None:
            return (f"{peer} hangs: it made no progress within timeout_s = {self.timeout_s:g} s "
                    f"({hung['stuck_s']:.0f} s in {hung['what']}), so its watchdog ended it")
        stuck = self.liveness.stuck(exc.peer) if self.liveness is not None else None
        if stuck is not None:  # stopped while hung: by the launcher after another rank's fault, or its watchdog
            return (f"{peer} hangs: its last heartbeat had it stuck, not waiting for any peer, for "
                    f"{stuck['stuck_s']:.0f} s in {stuck['what']} (timeout_s = {self.timeout_s:g} s), "
                    "and then its process was stopped")
        return f"{peer} is gone (its process died or failed): {exc.detail}"

    def _diagnosis(self) -> str:
        text = self.liveness.diagnose() if self.liveness is not None else ""
        return f"\nthe other ranks report:\n{text}" if text else ""

    @contextmanager
    def _waiting(self):
        """Blocked on a peer: counted as wait time, and heartbeats say so (a hung rank is one that is not)."""
        if self.liveness is not None:
            self.liveness.waiting = True
        try:
            with self.clock.waiting():
                yield
        finally:
            if self.liveness is not None:
                self.liveness.waiting = False

    def _receive(self, inbox: Inbox, g: int, doing: str):
        try:
            with self._waiting():
                return inbox.get(g)
        except PeerFailure as exc:
            raise self._fault(exc, doing) from None

    def _send(self, dst: int, tag: int, kind: int, g: int, value: Any, target=None, doing: str = "") -> None:
        try:
            self.outbox.send(dst, tag, kind, g, value, target)
        except PeerFailure as exc:
            raise self._fault(exc, doing) from None

    def _collective(self, fn: Callable[[], Any], doing: str) -> None:
        try:
            with self._waiting():
                fn()
        except RuntimeError as exc:
            members = list(self.layout.stage_ranks[self.stage])
            raise PipelineFault(f"{self.describe(self.rank)}: {doing} among ranks {members} failed (a replica "
                                f"died, hangs, or exceeded timeout_s = {self.timeout_s:g} s): "
                                f"{_short(str(exc))}{self._diagnosis()}") from None

    # -- the four operations --------------------------------------------------------------------------------
    def _forward(self, g: int, source) -> None:
        L, s = self.layout, self.stage
        if s == 0:
            try:
                x, target = next(source)
            except StopIteration:
                raise RuntimeError(f"{self.describe(self.rank)}: the data ran out at micro-batch {g}") from None
            x = x.to(self.device)
            target = target.to(self.device) if target is not None else None
        else:
            msg = self._receive(self.act_in[L.owner(s - 1, g)], g, f"waiting for the activation of micro-batch {g}")
            x, target = _leaf(msg.value), msg.target
        exclude = {p.untyped_storage().data_ptr() for p in self.module.parameters()}
        saved = _SavedBytes(exclude)
        version = None
        with self.clock.compute(), torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
            if self.stash is not None:
                version = self.stash.acquire()
                saved.exclude |= {t.untyped_storage().data_ptr() for t in self.stash.versions[version].values()}
                out = self.stash.forward(version, x)
            else:
                out = self.module(x)
            if self.is_last:
                loss = self.loss_fn(out, target)
                with torch.no_grad():
                    sums = self.metrics_fn(out, target) if self.metrics_fn is not None else {}
                self._record(g // self.n, float(loss.detach()), sums, _batch_size(x))
                keep: Any = loss * self.loss_scale
        if not self.is_last:
            kind = SPARSE if isinstance(out, SparseTensor) else DENSE
            self._send(L.owner(s + 1, g), TAG_FORWARD, kind, g, out, target,
                       f"sending the activation of micro-batch {g}")
            keep = out
        nbytes = saved.nbytes
        self.inflight[g] = (x if s > 0 else None, keep, version, nbytes)
        self._inflight_bytes += nbytes
        self.counts["forward"] += 1
        self.peaks["in_flight"] = max(self.peaks["in_flight"], len(self.inflight))
        self.peaks["activation_bytes"] = max(self.peaks["activation_bytes"], self._inflight_bytes)
        if self.stash is not None:
            self.peaks["versions"] = max(self.peaks["versions"], len(self.stash.versions))

    def _backward(self, g: int) -> None:
        L, s = self.layout, self.stage
        x, keep, version, nbytes = self.inflight.pop(g)
        if self.is_last:
            root, grad = keep, None
        else:
            msg = self._receive(self.grad_in[L.owner(s + 1, g)], g, f"waiting for the gradient of micro-batch {g}")
            root, grad = _root(keep), msg.value
            if grad.shape != root.shape:
                raise PipelineFault(f"{self.describe(self.rank)}: the gradient of micro-batch {g} has shape "
                                    f"{tuple(grad.shape)}, its activation {tuple(root.shape)}")
        with self.clock.compute():
            torch.autograd.backward(root, grad)
            if version is not None:
                self.stash.collect(version)
                self.stash.release(version)
        if s > 0:
            gx = _root(x).grad
            if gx is None:
                gx = torch.zeros_like(_root(x))
            self._send(L.owner(s - 1, g), TAG_BACKWARD, GRAD, g, gx, None, f"sending the gradient of micro-batch {g}")
        self._inflight_bytes -= nbytes
        self.counts["backward"] += 1

    def _update(self, step: int) -> None:
        factor = self.lr_factor(step) if self.lr_factor is not None else 1.0
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        if self.group is not None and self.params:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
            for p in self.params:
                by_dtype.setdefault(p.grad.dtype, []).append(p)
            for params in by_dtype.values():
                flat = torch.cat([p.grad.reshape(-1) for p in params])
                self._collective(lambda: dist.all_reduce(flat, group=self.group),
                                 f"the gradient all-reduce of update {self.updates}")
                ring = 2 * (self.replicas - 1) / self.replicas  # of the buffer, sent by each rank of a ring all-reduce
                self.allreduce_bytes += int(ring * flat.numel() * flat.element_size())
                at = 0
                for p in params:
                    p.grad.copy_(flat[at:at + p.numel()].view_as(p))
                    at += p.numel()
        with self.clock.compute():
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.stash is not None:
            self.stash.advance()
        self.updates += 1

    def _record(self, step: int, loss: float, sums: dict[str, float], samples: int) -> None:
        rec = self.step_stats.setdefault(step, {"loss_sum": 0.0, "micro_batches": 0, "samples": 0, "sums": {}})
        rec["loss_sum"] += loss
        rec["micro_batches"] += 1
        rec["samples"] += samples
        for k, v in sums.items():
            rec["sums"][k] = rec["sums"].get(k, 0.0) + float(v)

    def _end_step(self, step: int, on_step) -> None:
        self.step_compute.append(self.clock.compute_s - self._compute_at_end)
        self.step_base.append(self.clock.base_s - self._base_at_end)
        self.step_forwards.append(self.counts["forward"] - self._forwards_at_end)
        self._compute_at_end, self._base_at_end = self.clock.compute_s, self.clock.base_s
        self._forwards_at_end = self.counts["forward"]
        if self.group is not None:
            self._sync_buffers(step)
        mine = self.step_stats.pop(step, None) if self.is_last else None
        if self.is_last and self.rank != 0:
            self._send(0, TAG_OBJECT, OBJECT, step, mine or {}, None, f"sending the statistics of step {step}")
        if self.rank != 0:
            return
        parts = [mine] if mine else []
        for q, box in self.stats_in.items():
            msg = self._receive(box, step, f"waiting for the statistics of step {step}")
            if msg.value:
                parts.append(msg.value)
        micro = sum(p["micro_batches"] for p in parts)
        sums: dict[str, float] = {}
        for p in parts:
            for k, v in p["sums"].items():
                sums[k] = sums.get(k, 0.0) + v
        now = time.perf_counter()
        seconds, self._step_t0 = now - self._step_t0, now
        samples = sum(p["samples"] for p in parts)
        self.step_seconds.append(seconds)
        self.samples += samples
        if on_step is not None:
            on_step({"step": step, "loss": sum(p["loss_sum"] for p in parts) / max(micro, 1), "sums": sums,
                     "samples": samples, "seconds": seconds, "lr": float(self.optimizer.param_groups[0]["lr"])})

    def _sync_buffers(self, step: int) -> None:
        """Replicas average their batch-norm running statistics, so every replica (and the saved model) agrees."""
        buffers = [b for b in self.module.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.reshape(-1) for b in buffers])
        self._collective(lambda: dist.all_reduce(flat, group=self.group), f"the buffer average of step {step}")
        flat /= self.replicas
        at = 0
        for b in buffers:
            b.copy_(flat[at:at + b.numel()].view_as(b))
            at += b.numel()

    # -- what this rank measured ----------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        c = self.clock
        wall = max(self.wall_s, 1e-9)
        return {
            "rank": self.rank, "stage": self.stage, "replica": self.layout.replica_of(self.rank),
            "wall_s": self.wall_s, **c.snapshot(), "busy_fraction": c.compute_s / wall,
            "bubble_fraction": max(0.0, 1.0 - c.compute_s / wall), "speed": c.speed,
            "bytes_sent": dict(self.outbox.bytes_sent), "allreduce_bytes": self.allreduce_bytes,
            "forwards": self.counts["forward"], "backwards": self.counts["backward"], "updates": self.updates,
            "stash": self.stash is not None,
            "peak_in_flight": self.peaks["in_flight"], "peak_weight_versions": self.peaks["versions"],
            "peak_activation_bytes": self.peaks["activation_bytes"],
            "step_seconds": list(self.step_seconds), "step_compute_s": list(self.step_compute),
            "step_base_compute_s": list(self.step_base), "step_forwards": list(self.step_forwards),
            "samples": self.samples,
        }

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.inflight:
            raise RuntimeError("state_dict() with micro-batches in flight: call it between run() calls")
        return {"format": RANK_STATE_FORMAT, "layout": [list(r) for r in self.layout.stage_ranks],
                "rank": self.rank, "schedule": self.schedule, "micro_batches_per_step": self.n,
                "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != RANK_STATE_FORMAT:
            raise ValueError(f"not a pipeline rank checkpoint (format {state.get('format')!r})")
        mine = [list(r) for r in self.layout.stage_ranks]
        if state["layout"] != mine or state["rank"] != self.rank:
            raise ValueError(f"the checkpoint is of rank {state['rank']} in stages {state['layout']}; this is rank "
                             f"{self.rank} in stages {mine}: resume with the same plan")
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])  # base_lrs stay the constructed ones
        self.updates = int(state["updates"])
