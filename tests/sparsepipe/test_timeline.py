"""The schedule on a clock (timeline.py) against hand-solved cases: formulas and traces worked out on paper."""

from __future__ import annotations

import pytest

from plinth_sparsepipe.pipe.costs import CostModel
from plinth_sparsepipe.pipe.profile import LayerProfile, Profile
from plinth_sparsepipe.pipe.timeline import simulate, steady_per_batch_s

from .plan_helpers import cluster


def model(forward_backward, feats=None, params=None, bandwidth=1.0, devices=4, updates=None) -> CostModel:
    feats = feats or [0.0] * len(forward_backward)
    params = params or [0.0] * len(forward_backward)
    updates = updates or [0.0] * len(forward_backward)
    prof = Profile(model="test", device_type="a", batch_size=1, layers=[
        LayerProfile(name=f"l{i}", forward_s=f, backward_s=b, update_s=updates[i], output_feature_bytes=feats[i],
                     parameter_bytes=params[i]) for i, (f, b) in enumerate(forward_backward)])
    return CostModel(cluster([("s", bandwidth, {"a": devices})], {"a": prof}))


def one_per_stage(m: CostModel):
    d = m.cluster.devices()
    return [(i, i + 1, [d[i]]) for i in range(m.n_layers)]


def test_one_device_takes_forward_plus_backward_per_batch():
    m = model([(1, 2), (1, 1), (0.5, 0.5)])
    tl = simulate(m, [(0, 3, [m.cluster.devices()[0]])], steps=4)
    assert tl.step_end_s == pytest.approx((6, 12, 18, 24))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_gpipe_is_a_flow_shop_forward_then_backward(n):
    """Identical jobs through a flow shop: makespan = sum of the stages + (n - 1) x the slowest, forward (fill),
    then the same for the backward (drain); each step starts when stage 0 has drained."""
    fb = [(1, 2), (1, 1), (0.5, 0.5)]
    f, b = [x for x, _ in fb], [y for _, y in fb]
    step = sum(f) + (n - 1) * max(f) + sum(b) + (n - 1) * max(b)
    tl = simulate(model(fb), one_per_stage(model(fb)), "gpipe", n, steps=3)
    assert tl.step_end_s == pytest.approx((step, 2 * step, 3 * step))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_an_update_costs_once_per_update_not_per_backward(n):
    """One device, f + b = 3 s per micro-batch and a 1 s optimizer step: 1F1B updates after every micro-batch
    (4 s each); GPipe once per step of n (3 n + 1 s). The same step inside backward_s, as profiles without
    update_s have it, charges GPipe n s per step."""
    fb, u = [(1, 2)], [1.0]
    one = lambda m: [(0, 1, [m.cluster.devices()[0]])]  # noqa: E731
    m = model(fb, updates=u)
    assert simulate(m, one(m), "1f1b", n, steps=2).step_end_s == pytest.approx((4 * n, 8 * n))
    assert simulate(m, one(m), "gpipe", n, steps=2).step_end_s == pytest.approx((3 * n + 1, 6 * n + 2))
    folded = model([(1, 3)])
    assert simulate(folded, one(folded), "gpipe", n, steps=1).step_end_s == pytest.approx((4 * n,))


@pytest.mark.parametrize("n", [1, 3])
def test_gpipe_updates_after_the_drain(n):
    """The flow shop above with a 0.25 s step on every stage: each stage updates after its last backward; only
    stage 0's lies on the path to the next step (the later stages' end while stage 0 still drains)."""
    fb = [(1, 2), (1, 1), (0.5, 0.5)]
    f, b = [x for x, _ in fb], [y for _, y in fb]
    step = sum(f) + (n - 1) * max(f) + sum(b) + (n - 1) * max(b) + 0.25
    m = model(fb, updates=[0.25] * 3)
    assert simulate(m, one_per_stage(m), "gpipe", n, steps=3).step_end_s == pytest.approx((step, 2 * step, 3 * step))


def test_one_f_one_b_runs_at_the_slowest_stage_once_full():
    m = model([(1, 2), (1, 1), (0.5, 0.5)])
    assert steady_per_batch_s(m, one_per_stage(m)) == pytest.approx(3.0)
    assert m.evaluate(one_per_stage(m)).time_s == pytest.approx(3.0)  # the cost model agrees here


def test_a_slow_link_limits_1f1b_by_the_batches_in_flight():
    """2 stages, 1 s of work each, 2 s per message each way: stage 0 holds 2 micro-batches (warm-up 1 + 1), and
    one round trip takes 0.5 + 2 + 1 + 2 + 0.5 = 6 s, so 2 per 6 s (Little's law): 3 s per batch, where the cost
    model's steady state says max(1, 1, 4 s at the boundary / both directions) = 4 s."""
    m = model([(0.5, 0.5), (0.5, 0.5)], feats=[2.0, 0.0])
    tl = simulate(m, one_per_stage(m), "1f1b", 1, steps=6)
    assert tl.step_end_s == pytest.approx((6, 8, 12, 14, 18, 20))
    assert steady_per_batch_s(m, one_per_stage(m)) == pytest.approx(3.0)


def test_replicas_update_together():
    """Stage 0 on 2 replicas (1 + 1 s per micro-batch), stage 1 on one (0.5 + 0.5 s). Traced by hand: replica 1
    gets its first gradient at 3 s (stage 1 ran B(0) then F(1), B(1)), so both replicas' first update is at
    4 s (replica 0 waits from 3 s); from then on a step (2 micro-batches) every 2 s."""
    m = model([(1, 1), (0.5, 0.5)])
    d = m.cluster.devices()
    tl = simulate(m, [(0, 1, d[0:2]), (1, 2, [d[2]])], "1f1b", 1, steps=4)
    assert tl.step_end_s == pytest.approx((4, 6, 8, 10))


def test_a_replicated_stage_feeding_a_serial_one_stalls_where_the_cost_model_does_not_see_it():
    """3 stages, the first on 2 replicas at 2 + 2 s (2 s per batch), the others 1 + 1 s: the cost model says
    2 s per batch; the replicas' lockstep updates with the gradients coming back one by one make it slower
    (measured on real processes: docs/plugins/sparsepipe.md)."""
    m = model([(2, 2), (1, 1), (1, 1)])
    d = m.cluster.devices()
    stages = [(0, 1, d[0:2]), (1, 2, [d[2]]), (2, 3, [d[3]])]
    assert m.evaluate(stages).time_s == pytest.approx(2.0)
    assert steady_per_batch_s(m, stages) > 2.5


def test_the_all_reduce_holds_every_replica():
    m = model([(1, 1), (0.5, 0.5)], params=[3.0, 0.0])
    d = m.cluster.devices()
    # ring all-reduce of 3 bytes over 2 replicas at 1 B/s: 2 (2 - 1) 3 / (2 x 1) = 3 s per update. The first ends
    # at 4 + 3 s (as above, replica 1's first gradient comes at 3 s); then forward, backward, update: 1 + 1 + 3 s
    # per step; the last step has no forward left to run (the drain)
    tl = simulate(m, [(0, 1, d[0:2]), (1, 2, [d[2]])], "1f1b", 1, steps=6)
    assert tl.step_end_s == pytest.approx((7, 12, 17, 22, 27, 31))
    assert tl.per_batch_s(1, 5) == pytest.approx(5 / 2)
