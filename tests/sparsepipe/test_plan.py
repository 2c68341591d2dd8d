"""The planner against small cases solved by hand (each docstring shows the arithmetic).

Units are abstract: times in seconds, sizes in bytes, bandwidths in bytes/s, so the numbers stay readable.
"""

from __future__ import annotations

import pytest

from plinth_sparsepipe.pipe.costs import CostModel
from plinth_sparsepipe.pipe.planner import NoFeasiblePlan, make_plan

from .plan_helpers import brute_force, cluster, dp_plan, profile, stage_view


def one_server(prof, count, bw=1.0, memory=None):
    return cluster([("s", bw, {"a": count})], {"a": (prof, memory)})


def test_two_identical_devices_split_by_hand():
    """Layers take 1, 2, 3, 4 s; 1 byte of parameters each; bandwidth 1 B/s; activations ~free.

    Data parallel on 2: (10 + 2*1*4/(2*1)) / 2 = 7. Splits: [1 | 2 3 4] -> 9, [1 2 | 3 4] -> 7, [1 2 3 | 4] -> 6.
    So the optimum is layers 0-2 on one device and layer 3 on the other: 6 s per batch, 7/6 over data parallel.
    """
    plan = dp_plan(one_server(profile([1, 2, 3, 4], [1, 1, 1, 1], feats=[1e-3] * 4), 2))
    assert [(s.start, s.stop, s.replicas) for s in plan.stages] == [(0, 3, 1), (3, 4, 1)]
    assert plan.time_per_batch_s == pytest.approx(6.0)
    assert plan.bottleneck == "stage 0"
    assert plan.compared_to["data-parallel"].time_per_batch_s == pytest.approx(7.0)
    assert plan.speedup["data-parallel"] == pytest.approx(7 / 6)
    assert plan.speedup["even-split"] == pytest.approx(1.0)  # identical devices: the balanced split is optimal
    assert plan.throughput_samples_per_s == pytest.approx(1 / 6)


def test_a_replicated_stage_by_hand():
    """Three identical devices; layer 0 takes 6 s with 0.5 B of parameters, layer 1 takes 1 s with 3 B; 1 B/s.

    - one device: 7;  data parallel on 2: (7 + 2*1*3.5/2)/2 = 5.25;  on 3: (7 + 2*2*3.5/3)/3 = 3.889
    - [0 | 1] one device each: 6 (layer 1 replicated or not, layer 0 alone is 6)
    - [0 on 2 replicas | 1 on 1]: max((6 + 2*1*0.5/2)/2, 1) = 3.25   <- the optimum
    """
    plan = dp_plan(one_server(profile([6, 1], [0.5, 3]), 3))
    assert [(s.start, s.stop, s.replicas) for s in plan.stages] == [(0, 1, 2), (1, 2, 1)]
    assert plan.stages[0].allreduce_s == pytest.approx(0.5)
    assert plan.time_per_batch_s == pytest.approx(3.25)
    assert plan.compared_to["data-parallel"].time_per_batch_s == pytest.approx((7 + 4 * 3.5 / 3) / 3)


def test_communication_bound_no_split():
    """Two devices, two layers of 2 s, 0.005 B of parameters each, 5 B of activations after layer 0, 1 B/s.

    Split: max(2, 2, 2*5/1) = 10.  Data parallel: (4 + 2*1*0.01/2)/2 = 2.005.  One device: 4.  -> no split.
    """
    plan = dp_plan(one_server(profile([2, 2], [0.005, 0.005], feats=[5, 0]), 2))
    assert [(s.start, s.stop, s.replicas) for s in plan.stages] == [(0, 2, 2)]
    assert plan.kind == "planned" and plan.time_per_batch_s == pytest.approx(2.005)
    assert plan.compared_to["even-split"].time_per_batch_s == pytest.approx(10.0)
    assert plan.speedup["data-parallel"] == pytest.approx(1.0)


def test_heterogeneous_devices_by_hand():
    """A device of speed 1.0 and one of speed 0.5. Layers on the fast one: 3, 1, 1, 1 s (slow: 6, 2, 2, 2);
    10 B of parameters per layer at 1 B/s make any replication cost far more than it saves; activations ~free.

    Fast device first, fast gets layers 0..k:  k=0: max(3, 6) = 6;  k=1: max(4, 4) = 4;  k=2: max(5, 2) = 5.
    Slow device first, slow gets 0..k:         k=0: max(6, 3) = 6;  k=1: 8;  k=2: 10.
    One device: 6 (fast) or 12 (slow).  Data parallel: (12 + 2*1*40/2)/2 = 26 (the slow device governs).
    Optimum: layers 0-1 on the fast device, 2-3 on the slow one, 4 s per batch.
    The even split balances the fast profile (3 | 1 1 1) ignoring speed: max(3, 2*3) = 6 -> 1.5x.
    """
    fast = profile([3, 1, 1, 1], [10] * 4, feats=[1e-6] * 4, device_type="fast")
    c = cluster([("s", 1.0, {"fast": 1, "slow": 1})], {"fast": fast, "slow": fast.scaled(0.5, "slow")})
    plan = dp_plan(c)
    assert stage_view(plan) == [(0, 2, ["s/fast/0"]), (2, 4, ["s/slow/0"])]
    assert plan.time_per_batch_s == pytest.approx(4.0)
    assert [s.compute_type for s in plan.stages] == ["fast", "slow"]
    assert plan.compared_to["even-split"].time_per_batch_s == pytest.approx(6.0)
    assert plan.speedup["even-split"] == pytest.approx(1.5)
    assert plan.compared_to["data-parallel"].time_per_batch_s == pytest.approx(26.0)


def test_slowest_type_governs_a_mixed_stage():
    """One layer of 1 s (fast) / 1.25 s (speed 0.8), ~no parameters: both devices as replicas take
    (1.25 + ~0)/2 = 0.625 per batch, better than the fast device alone (1.0)."""
    fast = profile([1.0], [1e-9], device_type="fast")
    c = cluster([("s", 1.0, {"fast": 1, "slow": 1})], {"fast": fast, "slow": fast.scaled(0.8, "slow")})
    plan = dp_plan(c)
    assert plan.stages[0].replicas == 2 and plan.stages[0].compute_type == "slow"
    assert plan.time_per_batch_s == pytest.approx(0.625)


def test_a_cut_that_forces_a_rebuild_costs_the_next_stage():
    """Two devices, two layers of 1 s, 0.2 B of parameters each at 1 B/s. Without a restart cost the split
    gives max(1, 1) = 1.0 and beats data parallel (2 + 2*1*0.4/2)/2 = 1.2; a cut after layer 0 that makes the next
    stage rebuild for 0.5 s gives max(1, 1.5) = 1.5, so data parallel (1.2) wins."""
    split = dp_plan(one_server(profile([1, 1], [0.2, 0.2]), 2))
    assert [(s.start, s.stop) for s in split.stages] == [(0, 1), (1, 2)] and split.time_per_batch_s == pytest.approx(1)
    rebuild = dp_plan(one_server(profile([1, 1], [0.2, 0.2], restart=[0.5, 0.0]), 2))
    assert [s.replicas for s in rebuild.stages] == [2] and rebuild.time_per_batch_s == pytest.approx(1.2)
    assert rebuild.compared_to["even-split"].time_per_batch_s == pytest.approx(1.5)


TWO_SERVERS = profile([1, 1], [1, 1], feats=[1, 0])


@pytest.mark.parametrize("solver", ["exact", "hierarchical"])
def test_hierarchical_two_servers_by_hand(solver):
    """Two servers of two devices, 10 B/s inside a server; two layers of 1 s with 1 B of parameters each,
    1 B of activations after layer 0 (so a boundary moves 2 B).

    Inside one server: data parallel (2 + 2*1*2/(2*10))/2 = 1.1; a split 1 | 1 with a 0.2 s send: 1.0.
    Inter-server 10 B/s: layer 0 on server A's two devices, layer 1 on B's: each (1 + 2*1*1/(2*10))/2 = 0.55,
      the send 2/10 = 0.2 -> 0.55 (using both servers; data parallel over 4 is (2 + 2*3*2/(4*10))/4 = 0.575).
    Inter-server 1 B/s: every use of the second server pays >= 1 s more (a send of 2 s, or an all-reduce of
      (1 + 2*1*1/2)/2 = 1.0 per stage at best), so the plan stays on one server: 1.0, two devices unused.
    """
    servers = [("A", 10.0, {"a": 2}), ("B", 10.0, {"a": 2})]
    fast = dp_plan(cluster(servers, {"a": TWO_SERVERS}, inter=10.0), solver=solver)
    assert fast.time_per_batch_s == pytest.approx(0.55)
    assert fast.world_size == 4 and [s.replicas for s in fast.stages] == [2, 2]
    slow = dp_plan(cluster(servers, {"a": TWO_SERVERS}, inter=1.0), solver=solver)
    assert slow.time_per_batch_s == pytest.approx(1.0)
    assert slow.world_size == 2 and len(slow.unused_devices) == 2
    assert len({d.server for s in slow.stages for d in s.devices}) == 1
    assert brute_force(cluster(servers, {"a": TWO_SERVERS}, inter=1.0)) == pytest.approx(1.0)
    assert brute_force(cluster(servers, {"a": TWO_SERVERS}, inter=10.0)) == pytest.approx(0.55)


def test_hierarchical_does_not_mix_unlike_servers():
    """The hierarchical solver replicates an upper stage only over servers of one kind; the exact solver may
    put a fast server's and a slow server's device in one stage: (1.25 + ~0)/2 = 0.625 against 1.0."""
    fast = profile([1.0], [1e-9], device_type="fast")
    servers = [("A", 1.0, {"fast": 1}), ("B", 1.0, {"slow": 1})]
    c = cluster(servers, {"fast": fast, "slow": fast.scaled(0.8, "slow")}, inter=1.0)
    assert dp_plan(c, solver="exact").time_per_batch_s == pytest.approx(0.625)
    assert dp_plan(c, solver="hierarchical").time_per_batch_s == pytest.approx(1.0)


MEMORY_CASE = profile([1.5, 0.5], [10, 70], feats=[5, 0])


def test_memory_limit_forces_a_split():
    """Two devices; layer 0: 1.5 s, 10 B of parameters, 5 B of output; layer 1: 0.5 s, 70 B; 1000 B/s.

    Without a memory limit: data parallel (2 + 2*1*80/(2*1000))/2 = 1.04 beats the split max(1.5, 0.5) = 1.5.
    Memory 80 B: data parallel keeps 1 batch in flight: 1*(5 + 80) = 85 > 80; one device the same.
    The split: stage 0 holds (2-1)//1 + 1 = 2 batches: 2*(5 + 10) = 30; stage 1 holds 1: 70 -> fits: 1.5 s.
    Memory 60 B: layer 1 alone needs 70 -> no plan.
    """
    free = dp_plan(one_server(MEMORY_CASE, 2, bw=1000.0))
    assert [s.replicas for s in free.stages] == [2] and free.time_per_batch_s == pytest.approx(1.04)
    assert free.memory_checked is False
    tight = dp_plan(one_server(MEMORY_CASE, 2, bw=1000.0, memory=80.0))
    assert [(s.start, s.stop) for s in tight.stages] == [(0, 1), (1, 2)]
    assert [s.in_flight for s in tight.stages] == [2, 1]
    assert [s.memory_bytes for s in tight.stages] == pytest.approx([30.0, 70.0])
    assert tight.time_per_batch_s == pytest.approx(1.5) and tight.fits_memory and tight.memory_checked
    assert tight.compared_to["data-parallel"].fits_memory is False
    ignored = dp_plan(one_server(MEMORY_CASE, 2, bw=1000.0, memory=80.0), check_memory=False)
    assert ignored.time_per_batch_s == pytest.approx(1.04)
    with pytest.raises(NoFeasiblePlan, match="memory"):
        dp_plan(one_server(MEMORY_CASE, 2, bw=1000.0, memory=60.0))


def test_boundary_inside_a_server_uses_its_own_bandwidth():
    """A send between two stages on one server moves at that server's bandwidth; across servers at the
    inter-server one: 2*4 B over 8 B/s = 1 s inside, over 2 B/s = 4 s across."""
    prof = profile([1, 1], [0, 0], feats=[4, 0])
    c = cluster([("A", 8.0, {"a": 2}), ("B", 8.0, {"a": 1})], {"a": prof}, inter=2.0)
    model = CostModel(c)
    a0, a1, b0 = c.devices()
    assert model.evaluate([(0, 1, [a0]), (1, 2, [a1])]).stages[0].send_s == pytest.approx(1.0)
    assert model.evaluate([(0, 1, [a0]), (1, 2, [b0])]).stages[0].send_s == pytest.approx(4.0)
    assert model.evaluate([(0, 1, [a0, b0]), (1, 2, [a1])]).stages[0].send_s == pytest.approx(4.0)


def test_the_plan_is_picked_on_the_schedules_clock():
    """Three layers at 4, 2 and 2 s on 4 devices: the steady state's optimum replicates the first over 2 devices
    (2 s per batch) and simulates at 3 s (the replicas' lockstep, test_timeline.py); capped at 1 replica per stage
    the best plan is 4 s per batch, slower still, so the uncapped optimum stays, with its simulated time."""
    from plinth_sparsepipe.pipe.profile import LayerProfile, Profile

    prof = Profile(model="test", device_type="a", batch_size=1, layers=[
        LayerProfile(name=f"l{i}", forward_s=t / 2, backward_s=t / 2, output_feature_bytes=0.0, parameter_bytes=0.0)
        for i, t in enumerate([4, 2, 2])])
    c = one_server(prof, 4)
    plan = make_plan(c)
    assert plan.replica_cap is None and [s.replicas for s in plan.stages] == [2, 1, 1]
    assert plan.time_per_batch_s == pytest.approx(2.0) and plan.simulated_time_per_batch_s == pytest.approx(3.0)
    assert dp_plan(c).stages == plan.stages
