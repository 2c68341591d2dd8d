"""The schedule on a clock: a plan's time per batch with the stalls its op order makes, not only its steady state.

The cost model (costs.py) prices a plan as its slowest stage, which is what PipeDream's planner optimises. Two
things it cannot see, both measured on this machine (docs/plugins/sparsepipe.md):
- a replicated stage updates in lockstep (its k-th update all-reduces the k-th backward of every replica), while
  the unreplicated stage after it returns the replicas' gradients one after another: the replica served first
  waits for the others before every update, and nothing else fills that wait;
- GPipe fills and drains the pipeline every step.

`simulate` runs every rank's op list from `schedules.build` (the runtime's own lists) on a clock. An op starts when
its rank is free and its inputs are there: F(g) needs the activation from the previous stage's replica that ran
g, B(g) the gradient from the next stage's; U starts as a collective of the stage's replicas (together, when the
last arrives, for the ring all-reduce's time), then each replica runs its optimizer step; E(t) is a collective
too, and rank 0's E(t) also waits for the last stage's. A rank's forward, backward and update take its own device
type's profile times for its layers (the forward with the cut's `restart_s`; the update once per U, so once per
mini-batch under GPipe; a profile without `update_s` has it inside the backward), messages take
bytes / bandwidth on the link between the two ranks' servers, one message at a time per direction, and a send
does not hold up its sender (non-blocking). Not modelled: data loading, the sender's encoding and bookkeeping
(1-2 % of a micro-batch here), the batch-norm buffer average at E (a few KB).
"""

from __future__ import annotations

from dataclasses import dataclass

from .cluster import Device
from .costs import CostModel
from .schedules import Layout, build, micro_batches_per_step, min_per_reader


@dataclass(frozen=True)
class Timeline:
    """When each step ended on rank 0, for one simulated run."""

    step_end_s: tuple[float, ...]
    micro_batches_per_step: int

    def per_batch_s(self, skip: int, until: int | None = None) -> float:
        """Seconds per micro-batch over steps skip .. until - 1 (default: to the end, the drain included, as a
        measured run that ends there has it)."""
        until = len(self.step_end_s) if until is None else until
        if not 0 <= skip < until <= len(self.step_end_s):
            raise ValueError(f"steps [{skip}, {until}) of a {len(self.step_end_s)}-step timeline")
        start = self.step_end_s[skip - 1] if skip > 0 else 0.0
        return (self.step_end_s[until - 1] - start) / ((until - skip) * self.micro_batches_per_step)


def stage_layout(stages: list[tuple[int, int, list[Device]]]) -> Layout:
    return Layout.from_replicas([len(d) for _, _, d in stages])


def simulate(model: CostModel, stages: list[tuple[int, int, list[Device]]], schedule: str = "1f1b",
             per_reader: int = 1, steps: int = 8) -> Timeline:
    """Run `steps` steps of `schedule` for the plan `stages` ([(start, stop, devices)], as CostModel.evaluate
    takes it), each step `per_reader` micro-batches per replica of stage 0."""
    model.check_stages(stages)
    layout = stage_layout(stages)
    n = micro_batches_per_step(layout, per_reader)
    device = [d for _, _, devices in stages for d in devices]  # by rank
    fwd, bwd, upd = [], [], []
    for rank, d in enumerate(device):
        start, stop, _ = stages[layout.stage_of(rank)]
        f, b, u = model.forward_backward_update(d.type, start, stop)
        fwd.append(f)
        bwd.append(b)
        upd.append(u)
    allreduce = [model.allreduce(start, stop, devices) for start, stop, devices in stages]
    ops = {r: build(schedule, layout, r, 0, steps, n) for r in range(layout.world_size)}
    return _run(layout, ops, fwd, bwd, upd, allreduce, stages, model, device, n)


def _run(layout: Layout, ops, fwd, bwd, upd, allreduce, stages, model: CostModel, device, n: int) -> Timeline:
    S = layout.n_stages
    last = layout.stage_ranks[-1]
    pos = {r: 0 for r in ops}
    free = {r: 0.0 for r in ops}
    act: dict[tuple[int, int], float] = {}  # (stage, g): when g's activation has reached the stage
    grad: dict[tuple[int, int], float] = {}  # (stage, g): when g's output gradient has reached the stage
    link_free: dict[tuple[int, int], float] = {}
    ended: dict[tuple[int, int], float] = {}  # (rank, step): when the rank finished E(step)
    updates = {r: 0 for r in ops}
    step_end: dict[int, float] = {}

    def send(src: int, dst: int, at: float, nbytes: float) -> float:
        if src == dst:
            return at
        a, b = device[src], device[dst]
        bw = model.intra[a.server] if a.server == b.server else model.inter
        start = max(at, link_free.get((src, dst), 0.0))
        link_free[(src, dst)] = start + nbytes / bw
        return link_free[(src, dst)]

    def boundary(s: int) -> tuple[float, float]:
        """Bytes of the forward message and of the gradient at the boundary after stage s."""
        k = stages[s][1] - 1
        return float(model.feature_bytes[k] + model.coordinate_bytes[k]), float(model.feature_bytes[k])

    def peek(r: int):
        return ops[r][pos[r]] if pos[r] < len(ops[r]) else None

    def try_single(r: int) -> bool:
        op, s = peek(r), layout.stage_of(r)
        if op.kind == "F":
            if s > 0 and (s, op.g) not in act:
                return False
            start = max(free[r], act.get((s, op.g), 0.0))
            free[r] = start + fwd[r]
            if s + 1 < S:
                act[(s + 1, op.g)] = send(r, layout.owner(s + 1, op.g), free[r], boundary(s)[0])
        elif op.kind == "B":
            if s + 1 < S and (s, op.g) not in grad:
                return False
            start = max(free[r], grad.get((s, op.g), 0.0))
            free[r] = start + bwd[r]
            if s > 0:
                grad[(s - 1, op.g)] = send(r, layout.owner(s - 1, op.g), free[r], boundary(s - 1)[1])
        else:
            return False
        pos[r] += 1
        return True

    def try_group(r: int) -> bool:
        """U or E: every replica of the stage must be at the same one; they start together, and end together
        but for U's optimizer step, which each replica runs on its own after the all-reduce."""
        op, s = peek(r), layout.stage_of(r)
        members = layout.stage_ranks[s]
        for m in members:
            o = peek(m)
            if o is None or o.kind != op.kind or (op.kind == "U" and updates[m] != updates[r]) or \
                    (op.kind == "E" and o.step != op.step):
                return False
        start = max(free[m] for m in members)
        if op.kind == "E" and 0 in members and 0 not in last:  # rank 0 waits for the last stage's statistics
            if not all((q, op.step) in ended for q in last):
                return False
            start = max([start] + [ended[(q, op.step)] for q in last])
        end = start + (allreduce[s] if op.kind == "U" else 0.0)
        for m in members:
            free[m] = end + (upd[m] if op.kind == "U" else 0.0)
            pos[m] += 1
            if op.kind == "U":
                updates[m] += 1
            else:
                ended[(m, op.step)] = end
        if op.kind == "E" and 0 in members:
            step_end[op.step] = end
        return True

    while any(peek(r) is not None for r in ops):
        moved = False
        for r in ops:
            while peek(r) is not None and (try_single(r) or (peek(r).kind in "UE" and try_group(r))):
                moved = True
        if not moved:
            stuck = ", ".join(f"rank {r} at {peek(r)}" for r in ops if peek(r) is not None)
            raise RuntimeError(f"the schedule cannot proceed: {stuck}")
    return Timeline(tuple(step_end[t] for t in sorted(step_end)), n)


def steady_per_batch_s(model: CostModel, stages: list[tuple[int, int, list[Device]]], schedule: str = "1f1b",
                       per_reader: int | None = None) -> float:
    """Seconds per micro-batch once the pipeline is full, before it drains (`per_reader` default: the fewest
    micro-batches per stage-0 replica per step the layout allows)."""
    layout = stage_layout(stages)
    per_reader = per_reader or min_per_reader(layout)
    fill = -(-layout.n_stages // micro_batches_per_step(layout, per_reader)) + 1  # steps to fill or drain
    return simulate(model, stages, schedule, per_reader, steps=4 * fill).per_batch_s(fill, 3 * fill)
