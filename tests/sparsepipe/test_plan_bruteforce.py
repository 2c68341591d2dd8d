"""The dynamic programme against an exhaustive search on random small clusters: it must find the same optimum.

The reference (plan_helpers.brute_force) enumerates every contiguous partition and every assignment of devices to
stages (devices may stay unused) and prices each from the documented formulas with its own code.
"""

from __future__ import annotations

import random

import pytest

from plinth_sparsepipe.pipe.costs import CostModel
from plinth_sparsepipe.pipe.planner import NoFeasiblePlan, solve_exact, solve_hierarchical

from .plan_helpers import brute_force, cluster, dp_plan, profile


def random_cluster(seed: int):
    rng = random.Random(seed)
    n_layers = rng.randint(1, 5)
    params = [rng.choice([0.0, rng.uniform(0, 4)]) for _ in range(n_layers)]
    feats = [rng.uniform(0, 3) for _ in range(n_layers)]
    coords = [rng.choice([0.0, rng.uniform(0, 1)]) for _ in range(n_layers)]
    type_names = ["t0", "t1"][: rng.randint(1, 2)]
    types = {}
    for t in type_names:  # independent times per type: which type is slowest differs from range to range
        restart = [rng.choice([0.0, rng.uniform(0, 1)]) for _ in range(n_layers)]
        prof = profile([rng.uniform(0.1, 3) for _ in range(n_layers)], params, feats, coords, device_type=t,
                       restart=restart)
        whole = sum(params) + sum(feats) + sum(coords)  # one batch of the whole model on one device
        memory = rng.choice([None, rng.uniform(0.3, 1.5) * whole])
        types[t] = (prof, memory)
    n_servers = rng.randint(1, 2)
    servers, left = [], 4
    for q in range(n_servers):
        devices = {}
        for t in rng.sample(type_names, rng.randint(1, len(type_names))):
            if left > (n_servers - 1 - q):
                n = rng.randint(1, min(2, left - (n_servers - 1 - q)))
                devices[t] = n
                left -= n
        servers.append((f"s{q}", rng.uniform(0.5, 8), devices or {type_names[0]: 1}))
    inter = rng.uniform(0.2, 4) if n_servers > 1 else None
    return cluster(servers, types, inter=inter)


@pytest.mark.parametrize("seed", range(40))
def test_exact_matches_brute_force(seed):
    c = random_cluster(seed)
    want = brute_force(c)
    model = CostModel(c)
    if want == float("inf"):
        with pytest.raises(NoFeasiblePlan):
            solve_exact(model)
        return
    solution = solve_exact(model)
    assert solution.time_s == pytest.approx(want, rel=1e-9, abs=1e-12)
    prediction = model.evaluate(solution.stages)
    assert prediction.time_s == pytest.approx(solution.time_s, rel=1e-9, abs=1e-12)
    assert prediction.fits_memory
    plan = dp_plan(c, solver="exact")
    assert plan.time_per_batch_s == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert plan.speedup["data-parallel"] >= 1 - 1e-9 or not plan.compared_to["data-parallel"].fits_memory
    assert plan.speedup["even-split"] >= 1 - 1e-9 or not plan.compared_to["even-split"].fits_memory


@pytest.mark.parametrize("seed", range(40))
def test_hierarchical_is_priced_honestly_and_never_beats_exact(seed):
    c = random_cluster(seed)
    model = CostModel(c)
    try:
        exact = solve_exact(model).time_s
    except NoFeasiblePlan:
        exact = float("inf")
    try:
        solution = solve_hierarchical(model)
    except NoFeasiblePlan:
        return
    prediction = model.evaluate(solution.stages)
    assert prediction.time_s == pytest.approx(solution.time_s, rel=1e-9, abs=1e-12)
    assert prediction.fits_memory
    assert solution.time_s >= exact * (1 - 1e-9)
    if len(c.servers) == 1:  # one server: the hierarchy has nothing to approximate
        assert solution.time_s == pytest.approx(exact, rel=1e-9)


def test_memory_is_exercised_by_the_random_cases():
    """The random set contains cases where memory changes the optimum (or rules every plan out)."""
    changed = 0
    for seed in range(40):
        c = random_cluster(seed)
        if brute_force(c) != pytest.approx(brute_force(c, check_memory=False)):
            changed += 1
    assert changed >= 3
