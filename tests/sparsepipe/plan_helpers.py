"""In-memory profiles and clusters for the planner tests (no files), and an independent brute-force planner."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from plinth_sparsepipe.pipe.cluster import Cluster, Device, DeviceType, Server
from plinth_sparsepipe.pipe.profile import LayerProfile, Profile


def profile(times, params, feats=None, coords=None, device_type="a", batch_size=1, restart=None) -> Profile:
    """Layer i: forward+backward = times[i] (all in forward), parameter_bytes = params[i], output bytes feats/coords,
    restart_s = restart[i]."""
    n = len(times)
    feats = feats or [0.0] * n
    coords = coords or [0.0] * n
    restart = restart or [0.0] * n
    return Profile(model="test", device_type=device_type, batch_size=batch_size, layers=[
        LayerProfile(name=f"l{i}", forward_s=times[i], backward_s=0.0, output_feature_bytes=feats[i],
                     output_coordinate_bytes=coords[i], parameter_bytes=params[i], restart_s=restart[i])
        for i in range(n)
    ])


def cluster(servers, types, inter=None) -> Cluster:
    """servers: [(name, intra_bandwidth, {type: count})]; types: {name: Profile or (Profile, memory)}."""
    kinds = {}
    for name, spec in types.items():
        prof, memory = spec if isinstance(spec, tuple) else (spec, None)
        kinds[name] = DeviceType(name, prof, Path(f"{name}.json"), 1.0, memory)
    return Cluster("test", None, tuple(Server(n, bw, dict(d)) for n, bw, d in servers), inter, kinds)


def brute_force(c: Cluster, check_memory: bool = True) -> float:
    """The best time over every plan: all contiguous partitions x every assignment of devices to stages (or to no
    stage). Written from the formulas in costs.py's docstring, sharing no code with the planner."""
    devices = c.devices()
    names = list(c.types)
    L = len(c.types[names[0]].profile.layers)
    layers = {t: c.types[t].profile.layers for t in names}
    ref = layers[names[0]]
    intra = {s.name: s.intra_bandwidth for s in c.servers}
    inter = c.inter_bandwidth if c.inter_bandwidth is not None else math.inf
    best = math.inf
    for n in range(1, min(L, len(devices)) + 1):
        for cuts in itertools.combinations(range(1, L), n - 1):
            bounds = [0, *cuts, L]
            for assign in itertools.product(range(n + 1), repeat=len(devices)):  # n = unused
                groups = [[d for d, a in zip(devices, assign) if a == s] for s in range(n)]
                if any(not g for g in groups):
                    continue
                best = min(best, _price(bounds, groups, layers, ref, intra, inter, c, check_memory))
    return best


def _price(bounds, groups, layers, ref, intra, inter, c, check_memory) -> float:
    worst = 0.0
    for s, g in enumerate(groups):
        a, b = bounds[s], bounds[s + 1]
        r = len(g)
        compute = max(sum(x.forward_s + x.backward_s for x in layers[d.type][a:b])
                      + (layers[d.type][a - 1].restart_s if a > 0 else 0.0) for d in g)
        p = sum(x.parameter_bytes for x in ref[a:b])
        servers = {d.server for d in g}
        bw = intra[g[0].server] if len(servers) == 1 else inter
        t = (compute + (2 * (r - 1) * p / (r * bw) if r > 1 else 0.0)) / r
        if check_memory:
            later = sum(len(x) for x in groups[s:])
            flight = (later - 1) // r + 1
            need = flight * (sum(x.output_feature_bytes + x.output_coordinate_bytes for x in ref[a:b]) + p)
            limits = [c.types[d.type].memory for d in g if c.types[d.type].memory is not None]
            if limits and need > min(limits):
                return math.inf
        worst = max(worst, t)
        if s + 1 < len(groups):
            last = ref[b - 1]
            both = servers | {d.server for d in groups[s + 1]}
            bw = intra[g[0].server] if len(both) == 1 else inter
            worst = max(worst, (2 * last.output_feature_bytes + last.output_coordinate_bytes) / bw)
    return worst


def stage_view(plan) -> list[tuple[int, int, list[str]]]:
    return [(s.start, s.stop, [d.id for d in s.devices]) for s in plan.stages]


__all__ = ["Device", "brute_force", "cluster", "profile", "stage_view"]


def dp_plan(c: Cluster, **kw):
    """The solver's optimum of the steady state alone, without the schedule-aware pick among replica caps: what
    the hand-solved cases and the brute force price."""
    from plinth_sparsepipe.pipe.planner import make_plan

    return make_plan(c, schedule_aware=False, **kw)
