"""Pipeline schedules as one list of operations per rank: asynchronous 1F1B with weight stashing, and GPipe.

Micro-batches are numbered g = 0, 1, 2, ... over a run; a step (one optimizer step of the trainer) is `n`
consecutive ones, n = replicas of stage 0 x micro-batches each of them reads per step. A stage with R replicas
gives micro-batch g to replica g % R (round robin), so every stage sees every micro-batch once. Operations:

    F(g)  forward of micro-batch g (receive the activation, compute, send the output on)
    B(g)  backward of g (receive the output's gradient, compute, send the input's gradient back)
    U     update: all-reduce the gradients among the stage's replicas, then the optimizer step
    E(t)  end of step t: batch-norm statistics averaged over replicas, step statistics to rank 0, `on_step`

- GPipe (synchronous): each step, forwards of all its micro-batches (fill), backwards in reverse order (drain), one
  update. Same arithmetic as one process accumulating the same micro-batches, so the tests check weights equal.
- 1F1B (PipeDream, asynchronous): warm-up forwards, then alternately one forward and one backward, an update after
  every backward, and no flush between steps. A stage holds warm-up + 1 micro-batches in flight, so its backward of
  g runs with weights that later updates have changed: weight stashing keeps the version g's forward used, and
  warm-up + 1 versions at most. warm-up = (ranks of this stage and every later one - 1) // replicas of this stage
  (SparsePipe's `(ranks - 1 - ranks of earlier stages) // ranks in stage`). The k-th update of each replica of a
  stage combines the k-th backward of each: n must be a multiple of every stage's replica count.

`simulate` executes the lists with unit-time ops and raises `ScheduleDeadlock` if some rank can never proceed, so a
layout is checked before any process waits on another.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd, lcm
from typing import Literal

ScheduleName = Literal["1f1b", "gpipe"]
SCHEDULES: tuple[str, ...] = ("1f1b", "gpipe")


class ScheduleDeadlock(RuntimeError):
    """The op lists of some layout cannot all complete (a bug, or a layout the schedule does not support)."""


@dataclass(frozen=True)
class Layout:
    """Which ranks run each stage, in stage order (ranks numbered stage after stage, as plans number them)."""

    stage_ranks: tuple[tuple[int, ...], ...]

    @classmethod
    def from_replicas(cls, replicas: list[int]) -> "Layout":
        out, at = [], 0
        for r in replicas:
            out.append(tuple(range(at, at + r)))
            at += r
        return cls(tuple(out))

    @property
    def n_stages(self) -> int:
        return len(self.stage_ranks)

    @property
    def world_size(self) -> int:
        return sum(len(r) for r in self.stage_ranks)

    def replicas(self, stage: int) -> int:
        return len(self.stage_ranks[stage])

    def stage_of(self, rank: int) -> int:
        for s, ranks in enumerate(self.stage_ranks):
            if rank in ranks:
                return s
        raise ValueError(f"rank {rank} is in no stage of a {self.world_size}-rank layout")

    def replica_of(self, rank: int) -> int:
        return self.stage_ranks[self.stage_of(rank)].index(rank)

    def owner(self, stage: int, g: int) -> int:
        ranks = self.stage_ranks[stage]
        return ranks[g % len(ranks)]

    def ranks_from(self, stage: int) -> int:
        return sum(len(r) for r in self.stage_ranks[stage:])


@dataclass(frozen=True)
class Op:
    kind: Literal["F", "B", "U", "E"]
    g: int = -1  # the micro-batch of F and B
    step: int = -1

    def __str__(self) -> str:
        return f"{self.kind}({self.g})" if self.kind in "FB" else f"{self.kind}[step {self.step}]"


def warmup(layout: Layout, stage: int) -> int:
    return (layout.ranks_from(stage) - 1) // layout.replicas(stage)


def micro_batches_per_step(layout: Layout, per_reader: int) -> int:
    return layout.replicas(0) * per_reader


def divisibility_problem(layout: Layout, n: int, schedule: str) -> str | None:
    """Why 1F1B cannot run `n` micro-batches per step on this layout (None if it can)."""
    if schedule != "1f1b":
        return None
    need = lcm(*[layout.replicas(s) for s in range(layout.n_stages)])
    if n % need:
        return (f"1F1B needs the micro-batches per step ({n}) to be a multiple of every stage's replica count "
                f"(lcm {need}): each update of a replicated stage combines one backward of each replica")
    return None


def min_per_reader(layout: Layout) -> int:
    """The fewest micro-batches per stage-0 replica per step with which 1F1B runs on `layout`: n = replicas of
    stage 0 x that must be a multiple of every stage's replica count."""
    need = lcm(*[layout.replicas(s) for s in range(layout.n_stages)])
    return need // gcd(need, layout.replicas(0))


def local_micro_batches(layout: Layout, rank: int, first_step: int, steps: int, n: int) -> list[int]:
    s, r = layout.stage_of(rank), layout.replica_of(rank)
    R = layout.replicas(s)
    return [g for g in range(first_step * n, (first_step + steps) * n) if g % R == r]


def one_f_one_b(layout: Layout, rank: int, first_step: int, steps: int, n: int) -> list[Op]:
    problem = divisibility_problem(layout, n, "1f1b")
    if problem:
        raise ValueError(problem)
    mine = local_micro_batches(layout, rank, first_step, steps, n)
    w = min(warmup(layout, layout.stage_of(rank)), len(mine))
    ops = [Op("F", g, g // n) for g in mine[:w]]
    for i, g in enumerate(mine):
        if i + w < len(mine):
            ops.append(Op("F", mine[i + w], mine[i + w] // n))
        ops += [Op("B", g, g // n), Op("U", step=g // n)]
        if i + 1 == len(mine) or mine[i + 1] // n != g // n:
            ops.append(Op("E", step=g // n))
    return ops


def gpipe(layout: Layout, rank: int, first_step: int, steps: int, n: int) -> list[Op]:
    s, r = layout.stage_of(rank), layout.replica_of(rank)
    R = layout.replicas(s)
    ops: list[Op] = []
    for t in range(first_step, first_step + steps):
        mine = [g for g in range(t * n, (t + 1) * n) if g % R == r]
        ops += [Op("F", g, t) for g in mine]
        ops += [Op("B", g, t) for g in reversed(mine)]
        ops += [Op("U", step=t), Op("E", step=t)]
    return ops


def build(schedule: str, layout: Layout, rank: int, first_step: int, steps: int, n: int) -> list[Op]:
    if schedule == "1f1b":
        return one_f_one_b(layout, rank, first_step, steps, n)
    if schedule == "gpipe":
        return gpipe(layout, rank, first_step, steps, n)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def in_flight_limit(schedule: str, layout: Layout, stage: int, n: int) -> int:
    """Micro-batches a replica of `stage` holds at once (forward done, backward not): weight versions for 1F1B."""
    if schedule == "1f1b":
        return warmup(layout, stage) + 1
    return -(-n // layout.replicas(stage))


def simulate(layout: Layout, ops: dict[int, list[Op]], end_is_barrier: bool = False) -> int:
    """Run every rank's list with unit-time ops, honouring the messages and collectives between them; returns the
    number of rounds. Raises ScheduleDeadlock naming the ranks that wait forever. `end_is_barrier`: E(t) is a
    barrier of all ranks (a trainer that checkpoints in `on_step`)."""
    S = layout.n_stages
    last = layout.stage_ranks[-1]
    done_f: set[tuple[int, int]] = set()  # (stage, g)
    done_b: set[tuple[int, int]] = set()
    done_e: set[tuple[int, int]] = set()  # (rank, step)
    pos = {r: 0 for r in ops}
    u_count = {r: 0 for r in ops}

    def next_op(r: int) -> Op | None:
        return ops[r][pos[r]] if pos[r] < len(ops[r]) else None

    def group_ready(members, r: int, op: Op) -> bool:
        for m in members:
            o = next_op(m)
            if o is None or o.kind != op.kind:
                return False
            if op.kind == "U" and u_count[m] != u_count[r]:
                return False
            if op.kind == "E" and o.step != op.step:
                return False
        return True

    def reached_end(q: int, step: int) -> bool:
        o = next_op(q)
        return (q, step) in done_e or (o is not None and o.kind == "E" and o.step == step)

    def own_deps(r: int, op: Op) -> bool:
        s = layout.stage_of(r)
        if op.kind == "F":
            return s == 0 or (s - 1, op.g) in done_f
        if op.kind == "B":
            return (s, op.g) in done_f and (s == S - 1 or (s + 1, op.g) in done_b)
        if op.kind == "E" and r == 0 and 0 not in last:  # rank 0 receives the last stage's statistics
            return all(reached_end(q, op.step) for q in last)
        return True

    rounds = 0
    while any(next_op(r) is not None for r in ops):
        rounds += 1
        ready: list[int] = []
        for r, op in ((r, next_op(r)) for r in ops):
            if op is None or not own_deps(r, op):
                continue
            if op.kind in "UE":
                members = list(ops) if (op.kind == "E" and end_is_barrier) else layout.stage_ranks[layout.stage_of(r)]
                if not (group_ready(members, r, op) and all(own_deps(m, next_op(m)) for m in members)):
                    continue
            ready.append(r)
        if not ready:
            stuck = ", ".join(f"rank {r} at {next_op(r)}" for r in ops if next_op(r) is not None)
            raise ScheduleDeadlock(f"no rank can proceed: {stuck}")
        for r in ready:
            op = next_op(r)
            s = layout.stage_of(r)
            if op.kind == "F":
                done_f.add((s, op.g))
            elif op.kind == "B":
                done_b.add((s, op.g))
            elif op.kind == "U":
                u_count[r] += 1
            else:
                done_e.add((r, op.step))
            pos[r] += 1
    return rounds
