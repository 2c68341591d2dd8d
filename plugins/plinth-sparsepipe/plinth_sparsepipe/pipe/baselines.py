"""The two plans a planned one is compared with, priced by the same cost model (and runnable by the runtime).

- data parallel: one stage, every layer, every device a replica (synchronous: the slowest device governs, the
  gradients of the whole model are all-reduced, over the inter-server link when there are several servers);
- even split: one stage per device in cluster order (servers in file order, then types, then index), the layers
  cut so the stages' compute is as equal as it can be on the fastest type's profile, i.e. balanced as if every
  device were the same; with fewer layers than devices, one layer per stage and the rest unused.
"""

from __future__ import annotations

from .costs import CostModel
from .plan import Plan, plan_from_prediction


def data_parallel_plan(model: CostModel) -> Plan:
    stages = [(0, model.n_layers, model.cluster.devices())]
    return plan_from_prediction("data-parallel", model.evaluate(stages), model)


def even_split_plan(model: CostModel) -> Plan:
    devices = model.cluster.devices()
    fastest = min(model.type_names, key=lambda t: model.time_prefix[t][-1])
    cuts = balanced_cuts(list(model.time_prefix[fastest]), min(len(devices), model.n_layers))
    stages = [(a, b, [d]) for a, b, d in zip(cuts[:-1], cuts[1:], devices)]
    return plan_from_prediction("even-split", model.evaluate(stages), model)


def balanced_cuts(prefix: list[float], parts: int) -> list[int]:
    """Cut points 0 = c0 < c1 < ... < c_parts = L minimising the largest part, from prefix sums (exact, O(parts L^2))."""
    n = len(prefix) - 1
    inf = float("inf")
    # best[p][j]: the smallest possible largest part when the first j layers form p parts
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    back = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for p in range(1, parts + 1):
        for j in range(p, n - (parts - p) + 1):
            for i in range(p - 1, j):
                v = max(best[p - 1][i], prefix[j] - prefix[i])
                if v < best[p][j]:
                    best[p][j], back[p][j] = v, i
    cuts = [n]
    for p in range(parts, 0, -1):
        cuts.append(back[p][cuts[-1]])
    return cuts[::-1]
