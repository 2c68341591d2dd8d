"""The partitioner: PipeDream's dynamic programme over contiguous layer ranges, extended to device types.

PipeDream's A[i][j][m] is the best time of layers i..j on the first m devices of an ordered list; SparsePipe's code
orders that list by type (slowest type first inside a server, fastest server first across servers), so a stage
always gets a contiguous run of that one order. Here the devices are counted, not ordered: a state is how many
devices of each class are left (a class is a (server, type) pair), and a stage may take any number of each class.
That is the ordered-list programme searched over every ordering at once, so no ordering has to be chosen; with two
or three classes per server the state space stays tiny (8 GPUs in 2 servers: 45 states).

Suffix form (the same optimum as PipeDream's prefix form, but the devices after a stage are known, which the 1F1B
memory check needs): best[i][S] = min over the first stage [i, k) on a sub-multiset S' of S of
max(stage(i, k, S'), boundary after k-1, best[k][S - S']), every device of S used, S' != 0 (see costs.py for the
formulas). Using fewer devices than the cluster has is allowed: the answer is the best over every S.
Every plan a solver returns is priced again by `CostModel.evaluate`, and the tests check the two agree.

Two solvers:
- `exact`: the programme above over all (server, type) classes: the optimum of the cost model over every plan.
  Its cost grows with the product over classes of (count+1)(count+2)/2; `auto` uses it while that stays small.
- `hierarchical` (the paper's): solve each server alone for every layer range, then plan over servers with the
  inter-server bandwidth. An upper stage replicated over m servers uses m servers of one kind (identical device
  counts and bandwidth) running the same inner plan, whose inner stages then have m times the replicas and
  all-reduce over the inter-server link; that keeps every plan a plain list of stages the runtime can run. Its
  memory check counts every device of the later servers as in flight (conservative).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from plinth.errors import PlinthError

from .cluster import Cluster, Device
from .costs import CostModel
from .plan import Plan, plan_from_prediction

INF = math.inf
EXACT_BUDGET = 3_000_000  # sub-multiset pairs x layers^2 / 2: about a second of numpy on one core


class NoFeasiblePlan(PlinthError):
    """No assignment of the layers fits the devices' memory."""


@dataclass(frozen=True)
class Solution:
    time_s: float  # the programme's own value; CostModel.evaluate(stages) must agree
    stages: list[tuple[int, int, list[Device]]]


# -- count vectors ------------------------------------------------------------------------------------------
class _Space:
    """Every count vector 0 <= v <= counts as one mixed-radix integer, and every (S, S' <= S, S' != 0) pair."""

    def __init__(self, counts: list[int], single_class: bool = False):
        self.counts = counts
        self.vectors = np.array(list(itertools.product(*[range(c + 1) for c in counts])), dtype=int).reshape(
            -1, len(counts))
        self.strides = np.array([int(np.prod([c + 1 for c in counts[k + 1:]])) for k in range(len(counts))])
        self.n = len(self.vectors)
        self.size = self.vectors.sum(axis=1)
        pairs = []
        for s, v in enumerate(self.vectors):
            for u in itertools.product(*[range(x + 1) for x in v]):
                u = np.array(u)
                if u.sum() == 0 or (single_class and np.count_nonzero(u) > 1):
                    continue
                sub = int(u @ self.strides)
                pairs.append((s, sub, s - sub))
        arr = np.array(pairs, dtype=int).reshape(-1, 3)
        self.pair_state, self.pair_sub, self.pair_rest = arr[:, 0], arr[:, 1], arr[:, 2]

    @property
    def n_pairs(self) -> int:
        return len(self.pair_state)


@dataclass
class _Table:
    """best[f, i, e, S]: layers [i, ends[e]) on exactly the devices S, the first stage on server f (F-1: on
    several). pick_pair / pick_stop: the first stage of that optimum."""

    best: np.ndarray
    pick_pair: np.ndarray
    pick_stop: np.ndarray
    ends: list[int]


# stage_times(i, pair_sub, pair_state) -> (pairs, L - i) seconds for stops i+1..L (inf: not allowed)
StageTimes = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def _suffix_dp(ends: list[int], space: _Space, stage_times: StageTimes, send_inter: np.ndarray,
               send_local: np.ndarray, sub_server: np.ndarray) -> _Table:
    """The programme for layers [i, e), every start i and every e in `ends`, in one pass over i.
    send_inter[k] / send_local[q, k]: the boundary after layer k across servers / inside server q;
    sub_server[S']: the one server of S', or -1."""
    L = max(ends)
    ends_arr = np.array(ends)
    n_servers = send_local.shape[0]
    n_f, n_s = n_servers + 1, space.n
    best = np.full((n_f, L + 1, len(ends), n_s), INF)
    pick_pair = np.full(best.shape, -1, dtype=int)
    pick_stop = np.full(best.shape, -1, dtype=int)
    ps, psub, prest = space.pair_state, space.pair_sub, space.pair_rest
    fsub = sub_server[psub]
    f_of_pair = np.where(fsub >= 0, fsub, n_servers)
    local = fsub >= 0
    q = np.where(local, fsub, 0)
    cols = np.arange(space.n_pairs)
    same_f = np.arange(n_f)[:, None, None, None] == np.where(local, fsub, -1)[None, None, None, :]
    for i in range(L - 1, -1, -1):
        e_idx = np.nonzero(ends_arr > i)[0]
        n, n_e = L - i, len(e_idx)
        stage = stage_times(i, psub, ps)  # (pairs, n)
        nxt = np.full((space.n_pairs, n_e, n), INF)
        # the stage ends at e: nothing may be left over
        nxt[:, np.arange(n_e), ends_arr[e_idx] - i - 1] = np.where(prest == 0, 0.0, INF)[:, None]
        if n > 1:  # the next stage starts at j (best[., j, e] is inf for j >= e)
            j = np.arange(i + 1, L)
            rest = best[:, j][:, :, e_idx][..., prest]  # (F, n-1, n_e, pairs)
            # to another server, or to/from several: inter-server bandwidth; never to the same single server
            other = np.where(same_f, INF, rest).min(axis=0)
            via_inter = np.maximum(send_inter[j - 1][:, None, None], other).transpose(2, 0, 1)
            same = rest[q, :, :, cols]  # (pairs, n-1, n_e): the next stage on this stage's one server
            via_local = np.where(local[:, None, None], np.maximum(send_local[q][:, j - 1][:, :, None], same), INF)
            nxt[:, :, : n - 1] = np.minimum(nxt[:, :, : n - 1], np.minimum(via_inter, via_local).transpose(0, 2, 1))
        cand = np.maximum(stage[:, None, :], nxt)  # (pairs, n_e, n)
        k = cand.argmin(axis=2)
        value = np.take_along_axis(cand, k[..., None], axis=2)[..., 0].ravel()
        key = ((np.arange(n_e)[None, :] * n_f + f_of_pair[:, None]) * n_s + ps[:, None]).ravel()
        order = np.lexsort((value, key))
        keys, first = np.unique(key[order], return_index=True)
        win = order[first]
        e_at, f_at, s_at = e_idx[keys // (n_f * n_s)], (keys // n_s) % n_f, keys % n_s
        best[f_at, i, e_at, s_at] = value[win]
        pick_pair[f_at, i, e_at, s_at] = win // n_e
        pick_stop[f_at, i, e_at, s_at] = i + 1 + k.ravel()[win]
    return _Table(best, pick_pair, pick_stop, list(ends))


def _trace(table: _Table, space: _Space, sub_server: np.ndarray, send_inter, send_local, f: int, i: int, e: int,
           s: int) -> list[tuple[int, int, int]]:
    """The stages [(start, stop, sub state)] of best[f, i, e, s]."""
    out = []
    end = table.ends[e]
    n_f = table.best.shape[0]
    while i < end:
        p = table.pick_pair[f, i, e, s]
        stop = int(table.pick_stop[f, i, e, s])
        sub, rest = int(space.pair_sub[p]), int(space.pair_rest[p])
        out.append((i, stop, sub))
        if stop < end:
            qs = int(sub_server[sub])
            nxt = table.best[:, stop, e, rest]
            options = [(max(send_inter[stop - 1], nxt[g]), g) for g in range(n_f) if g != qs]
            if qs >= 0:
                options.append((max(send_local[qs, stop - 1], nxt[qs]), qs))
            f = min(options)[1]
        i, s = stop, rest
    return out


def _pick_final(table: _Table, space: _Space, i: int = 0, e: int = 0) -> tuple[int, int] | None:
    """The best (f, S) over every non-empty S; ties (within 1e-12) go to the plan using fewer devices."""
    values = table.best[:, i, e, :]
    top = values.min()
    if not np.isfinite(top):
        return None
    f, s = np.nonzero(values <= top * (1 + 1e-12))
    k = np.argmin(space.size[s] * 1.0 + 1e-3 * f)
    return int(f[k]), int(s[k])


# -- stage times of device classes --------------------------------------------------------------------------
def _class_stage_times(model: CostModel, space: _Space, class_types: list[str], bandwidth: np.ndarray,
                       mult: int = 1, d_after: int = 0, max_replicas: int | None = None) -> StageTimes:
    """Stages on sub-multisets of classes that each hold one device type. bandwidth[S']: inside S' (per sub).
    mult: each chosen device stands for `mult` replicas (m identical servers); d_after: devices after the range;
    max_replicas: no stage on more devices than that."""
    types = list(dict.fromkeys(class_types))
    type_of = np.array([types.index(t) for t in class_types])
    present = space.vectors > 0
    masks = np.array([np.bitwise_or.reduce(1 << type_of[row], initial=0) for row in present])
    limits = np.full(space.n, INF)
    for s, row in enumerate(present):
        lim = model.memory_limit([class_types[c] for c in np.nonzero(row)[0]])
        limits[s] = INF if lim is None else lim
    replicas = space.size * mult
    safe_r = np.maximum(replicas, 1)
    prefix = np.stack([model.time_prefix[t] for t in types])  # (types, L+1)
    restart = np.stack([model.restart[t] for t in types])  # (types, L)

    def stage_times(i: int, psub: np.ndarray, ps: np.ndarray) -> np.ndarray:
        comp_t = prefix[:, i + 1:] - prefix[:, i: i + 1] + restart[:, i: i + 1]  # (types, L - i)
        comp = np.full((space.n, comp_t.shape[1]), -INF)
        for t in range(len(types)):
            has = (masks >> t) & 1 == 1
            comp[has] = np.maximum(comp[has], comp_t[t])
        params = model.param_prefix[i + 1:] - model.param_prefix[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            allreduce = np.where(replicas[:, None] > 1,
                                 2 * (replicas[:, None] - 1) * params[None, :] / (safe_r[:, None] * bandwidth[:, None]),
                                 0.0)
            t = (comp + allreduce) / safe_r[:, None]
        t[space.size == 0] = INF
        if max_replicas is not None:
            t[replicas > max_replicas] = INF
        out = t[psub]
        if np.isfinite(limits).any():
            later = space.size[ps] * mult + d_after
            flight = (later - 1) // replicas[psub] + 1
            need = flight[:, None] * (model.stash_prefix[i + 1:] - model.stash_prefix[i] + params)[None, :]
            out = np.where(need <= limits[psub][:, None], out, INF)
        return out

    return stage_times


def _sends(model: CostModel, intra: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Boundary times after each layer: across servers, and inside each server (none given: never local)."""
    b = model.boundary_bytes
    local = np.array([b / bw for bw in intra]) if intra else np.full((1, len(b)), INF)
    return b / model.inter, local


# -- the solvers --------------------------------------------------------------------------------------------
def _classes(cluster: Cluster) -> list[tuple[int, str, int]]:
    return [(q, t, n) for q, s in enumerate(cluster.servers) for t, n in s.devices.items()]


def exact_cost(cluster: Cluster) -> float:
    """Work of the exact solver: sub-multiset pairs x layers^2 / 2."""
    pairs = math.prod((n + 1) * (n + 2) // 2 for _, _, n in _classes(cluster))
    return pairs * len(cluster.layer_names) ** 2 / 2


def solve_exact(model: CostModel, max_replicas: int | None = None) -> Solution:
    cluster = model.cluster
    classes = _classes(cluster)
    space = _Space([n for _, _, n in classes])
    servers_of = [{classes[c][0] for c in np.nonzero(row)[0]} for row in space.vectors > 0]
    sub_server = np.array([next(iter(x)) if len(x) == 1 else -1 for x in servers_of])
    intra = [s.intra_bandwidth for s in cluster.servers]
    bandwidth = np.array([intra[q] if q >= 0 else model.inter for q in sub_server], dtype=float)
    times = _class_stage_times(model, space, [t for _, t, _ in classes], bandwidth, max_replicas=max_replicas)
    value, stages = _solve_all_layers(model, space, times, _sends(model, intra), sub_server)
    taken = {k: 0 for k in range(len(classes))}
    out = []
    for start, stop, sub in stages:
        devices = []
        for c, n in enumerate(space.vectors[sub]):
            q, t, _ = classes[c]
            devices += [Device(cluster.servers[q].name, t, taken[c] + x) for x in range(int(n))]
            taken[c] += int(n)
        out.append((start, stop, devices))
    return Solution(value, out)


@dataclass
class _Kind:
    servers: list[int]  # indices into cluster.servers, all with these devices and bandwidth
    types: list[str]
    counts: list[int]
    intra: float


def _kinds(cluster: Cluster) -> list[_Kind]:
    kinds: dict[tuple, _Kind] = {}
    for q, s in enumerate(cluster.servers):
        key = (s.intra_bandwidth, tuple(sorted(s.devices.items())))
        if key not in kinds:
            kinds[key] = _Kind([], list(s.devices), list(s.devices.values()), s.intra_bandwidth)
        kinds[key].servers.append(q)
    return list(kinds.values())


class _ServerPlans:
    """For one server kind used m times: the best inner plan of every layer range (computed once per (m, d))."""

    def __init__(self, model: CostModel, kind: _Kind, max_replicas: int | None = None):
        self.model, self.kind, self.max_replicas = model, kind, max_replicas
        self.space = _Space(kind.counts)
        self.cache: dict[tuple[int, int], tuple[np.ndarray, tuple]] = {}

    def times(self, m: int, d_after: int) -> tuple[np.ndarray, tuple]:
        """T[i, e] for layers [i, e) (inf where nothing fits), and what tracing a range needs."""
        if (m, d_after) not in self.cache:
            model, kind, space = self.model, self.kind, self.space
            L = model.n_layers
            one = m == 1
            sub_server = np.where(space.size > 0, 0 if one else -1, -1)
            bandwidth = np.full(space.n, kind.intra if one else model.inter, dtype=float)
            stage_times = _class_stage_times(model, space, kind.types, bandwidth, mult=m, d_after=d_after,
                                             max_replicas=self.max_replicas)
            send_inter, send_local = _sends(model, [kind.intra])
            ends = list(range(1, L + 1))
            table = _suffix_dp(ends, space, stage_times, send_inter, send_local, sub_server)
            T = np.full((L + 1, L + 1), INF)
            T[:, 1:] = table.best.min(axis=(0, 3))
            self.cache[(m, d_after)] = (T, (table, sub_server, send_inter, send_local))
        return self.cache[(m, d_after)]

    def stages(self, m: int, d_after: int, start: int, stop: int) -> list[tuple[int, int, np.ndarray]]:
        _, (table, sub_server, send_inter, send_local) = self.times(m, d_after)
        f, s = _pick_final(table, self.space, start, stop - 1)
        return [(a, b, self.space.vectors[sub]) for a, b, sub in
                _trace(table, self.space, sub_server, send_inter, send_local, f, start, stop - 1, s)]


def solve_hierarchical(model: CostModel, max_replicas: int | None = None) -> Solution:
    cluster = model.cluster
    kinds = _kinds(cluster)
    inner = [_ServerPlans(model, k, max_replicas) for k in kinds]
    per_server = np.array([sum(k.counts) for k in kinds])
    upper = _Space([len(k.servers) for k in kinds], single_class=True)
    L = model.n_layers
    memory_on = any(v is not None for v in model.memory.values())

    def upper_times(i: int, psub: np.ndarray, ps: np.ndarray) -> np.ndarray:
        out = np.full((len(psub), L - i), INF)
        for p, (sub, state) in enumerate(zip(psub, ps)):
            c = int(np.nonzero(upper.vectors[sub])[0][0])
            m = int(upper.vectors[sub][c])
            d_after = int((upper.vectors[state - sub] * per_server).sum()) if memory_on else 0
            T, _ = inner[c].times(m, d_after)
            out[p] = T[i, i + 1:]
        return out

    value, stages = _solve_all_layers(model, upper, upper_times, _sends(model, []), np.full(upper.n, -1))
    state = sum(sub for _, _, sub in stages)  # the servers used (mixed-radix codes add up)
    next_server = [0] * len(kinds)
    out = []
    for start, stop, sub in stages:
        c = int(np.nonzero(upper.vectors[sub])[0][0])
        m = int(upper.vectors[sub][c])
        state -= sub
        d_after = int((upper.vectors[state] * per_server).sum()) if memory_on else 0
        servers = [cluster.servers[q] for q in kinds[c].servers[next_server[c]: next_server[c] + m]]
        next_server[c] += m
        taken = {(s.name, t): 0 for s in servers for t in kinds[c].types}
        for a, b, counts in inner[c].stages(m, d_after, start, stop):
            devices = []
            for s in servers:
                for t, n in zip(kinds[c].types, counts):
                    devices += [Device(s.name, t, taken[(s.name, t)] + x) for x in range(int(n))]
                    taken[(s.name, t)] += int(n)
            out.append((a, b, devices))
    return Solution(value, out)


def _solve_all_layers(model: CostModel, space: _Space, times: StageTimes, sends, sub_server):
    """The optimum for layers [0, L) over every non-empty device set: (its value, its [(start, stop, sub)])."""
    table = _suffix_dp([model.n_layers], space, times, *sends, sub_server)
    picked = _pick_final(table, space)
    if picked is None:
        raise NoFeasiblePlan(_no_plan_message(model))
    f, s = picked
    return float(table.best[f, 0, 0, s]), _trace(table, space, sub_server, *sends, f, 0, 0, s)


def _no_plan_message(model: CostModel) -> str:
    limits = {t: m for t, m in model.memory.items() if m is not None}
    return ("no plan fits the devices' memory (" + ", ".join(f"{t}: {m / 1e9:.3g} GB" for t, m in limits.items())
            + "): even one layer per stage needs more; use a smaller batch size, more devices, or check `memory`")


def make_plan(cluster: Cluster, solver: str = "auto", check_memory: bool = True, baselines: bool = True,
              schedule_aware: bool = True) -> Plan:
    """The planner's plan for `cluster`, with the even-split and data-parallel plans priced the same way for
    comparison.

    The solver optimises the cost model's steady state (the paper's programme). `schedule_aware`: it is also
    solved with the replicas per stage capped at 1, 2, 4, ... (fewer devices in lockstep, see timeline.py), every
    candidate is run on the schedule's clock, and the one the timeline finds fastest is the plan (the uncapped
    optimum unless another is more than 1 % faster); `replica_cap` records the cap it was solved with."""
    from .baselines import data_parallel_plan, even_split_plan
    from .timeline import steady_per_batch_s

    model = CostModel(cluster, check_memory=check_memory)
    if solver == "auto":
        solver = "exact" if exact_cost(cluster) <= EXACT_BUDGET else "hierarchical"
    if solver not in ("exact", "hierarchical"):
        raise ValueError(f"solver must be auto, exact or hierarchical; got {solver!r}")
    solve = solve_exact if solver == "exact" else solve_hierarchical
    t0 = time.perf_counter()
    solution = solve(model)
    cap, best = None, None
    if schedule_aware:
        most = max(len(d) for _, _, d in solution.stages)
        best = steady_per_batch_s(model, solution.stages)
        for c in (2 ** k for k in range(most.bit_length())):  # 1, 2, 4, ... below the optimum's largest stage
            if c >= most:
                break
            try:
                other = solve(model, max_replicas=c)
            except NoFeasiblePlan:
                continue
            simulated = steady_per_batch_s(model, other.stages)
            if simulated < best * 0.99:
                solution, best, cap = other, simulated, c
    seconds = time.perf_counter() - t0
    prediction = model.evaluate(solution.stages)
    plan = plan_from_prediction("planned", prediction, model, solver=solver, planner_seconds=seconds, simulated=best)
    plan = plan.model_copy(update={"replica_cap": cap})
    if baselines:
        plan = plan.with_baselines([data_parallel_plan(model), even_split_plan(model)])
    return plan
