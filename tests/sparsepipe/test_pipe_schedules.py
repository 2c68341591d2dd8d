"""The schedules as op lists: PipeDream's 1F1B and GPipe, checked op by op on small cases and for deadlock
freedom on every layout of up to 4 stages x 3 replicas (the simulator executes them with the runtime's rules)."""

from __future__ import annotations

import itertools

import pytest

from plinth_sparsepipe.pipe.schedules import (SCHEDULES, Layout, Op, ScheduleDeadlock, build, divisibility_problem,
                                              gpipe, in_flight_limit, one_f_one_b, simulate, warmup)


def kinds(ops):
    return " ".join(str(op) for op in ops if op.kind in "FB")


def test_one_f_one_b_on_three_stages_by_hand():
    """3 stages, 1 replica each, one micro-batch per step, 4 steps: warm-ups 2, 1, 0 (PipeDream's)."""
    layout = Layout.from_replicas([1, 1, 1])
    assert [warmup(layout, s) for s in range(3)] == [2, 1, 0]
    assert kinds(one_f_one_b(layout, 0, 0, 4, 1)) == "F(0) F(1) F(2) B(0) F(3) B(1) B(2) B(3)"
    assert kinds(one_f_one_b(layout, 1, 0, 4, 1)) == "F(0) F(1) B(0) F(2) B(1) F(3) B(2) B(3)"
    assert kinds(one_f_one_b(layout, 2, 0, 4, 1)) == "F(0) B(0) F(1) B(1) F(2) B(2) F(3) B(3)"
    ops = one_f_one_b(layout, 0, 0, 4, 1)
    # an update after every backward, and the end of step t right after the backward of its last micro-batch
    assert [str(o) for o in ops[3:6]] == ["B(0)", "U[step 0]", "E[step 0]"]
    assert sum(o.kind == "U" for o in ops) == 4 and [o.step for o in ops if o.kind == "E"] == [0, 1, 2, 3]


def test_gpipe_fills_then_drains_each_step():
    layout = Layout.from_replicas([1, 1])
    ops = gpipe(layout, 0, 0, 2, 3)
    assert [str(o) for o in ops] == ["F(0)", "F(1)", "F(2)", "B(2)", "B(1)", "B(0)", "U[step 0]", "E[step 0]",
                                     "F(3)", "F(4)", "F(5)", "B(5)", "B(4)", "B(3)", "U[step 1]", "E[step 1]"]


def test_replicas_take_micro_batches_round_robin():
    """Stage 0 on 2 replicas, stage 1 on 1; 2 micro-batches per replica per step: n = 4."""
    layout = Layout.from_replicas([2, 1])
    assert layout.stage_ranks == ((0, 1), (2,))
    assert [o.g for o in gpipe(layout, 0, 0, 1, 4) if o.kind == "F"] == [0, 2]
    assert [o.g for o in gpipe(layout, 1, 0, 1, 4) if o.kind == "F"] == [1, 3]
    assert [o.g for o in gpipe(layout, 2, 0, 1, 4) if o.kind == "F"] == [0, 1, 2, 3]
    # warm-up of stage 0 = (3 ranks from here - 1) // 2 replicas = 1; its replicas update once per own backward
    assert warmup(layout, 0) == 1 and in_flight_limit("1f1b", layout, 0, 4) == 2
    assert kinds(one_f_one_b(layout, 1, 0, 2, 4)) == "F(1) F(3) B(1) F(5) B(3) F(7) B(5) B(7)"


def test_resumed_steps_continue_the_numbering():
    layout = Layout.from_replicas([1, 1])
    assert [o.g for o in gpipe(layout, 1, 3, 1, 2) if o.kind == "F"] == [6, 7]
    assert [o.step for o in one_f_one_b(layout, 0, 3, 2, 2) if o.kind == "E"] == [3, 4]


def test_one_f_one_b_needs_micro_batches_divisible_by_replicas():
    layout = Layout.from_replicas([1, 2])
    assert "multiple of every stage's replica count" in divisibility_problem(layout, 3, "1f1b")
    assert divisibility_problem(layout, 3, "gpipe") is None
    with pytest.raises(ValueError, match="lcm 2"):
        one_f_one_b(layout, 0, 0, 1, 3)
    with pytest.raises(ValueError, match="unknown schedule"):
        build("pipedream-2bw", layout, 0, 0, 1, 2)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("barrier", [False, True])
def test_every_small_layout_runs_to_the_end(schedule, barrier):
    """Up to 4 stages with 1-3 replicas each, 1-3 micro-batches per reader, 3 steps; `barrier`: the trainer
    synchronises every rank at each step end (a checkpoint), which must not deadlock either."""
    checked = 0
    for stages in range(1, 5):
        for replicas in itertools.product(range(1, 4), repeat=stages):
            layout = Layout.from_replicas(list(replicas))
            for per_reader in (1, 2, 3):
                n = layout.replicas(0) * per_reader
                if divisibility_problem(layout, n, schedule):
                    continue
                ops = {r: build(schedule, layout, r, 0, 3, n) for r in range(layout.world_size)}
                simulate(layout, ops, end_is_barrier=barrier)
                # every micro-batch runs forward then backward exactly once per stage
                for s in range(stages):
                    seen = [o for r in layout.stage_ranks[s] for o in ops[r] if o.kind in "FB"]
                    assert sorted((o.g, o.kind) for o in seen) == sorted(
                        (g, k) for g in range(3 * n) for k in "FB")
                checked += 1
    assert checked > (150 if schedule == "1f1b" else 300)


def test_simulator_finds_a_deadlock():
    """Stage 1 doing its backward before the forward it needs can never proceed."""
    layout = Layout.from_replicas([1, 1])
    ops = {0: [Op("F", 0, 0), Op("B", 0, 0)], 1: [Op("B", 0, 0), Op("F", 0, 0)]}
    with pytest.raises(ScheduleDeadlock, match="rank 1 at B"):
        simulate(layout, ops)


def test_the_pipeline_is_faster_than_one_stage_at_a_time():
    """With unit-time ops, 1F1B over 4 stages and 8 micro-batches takes far fewer rounds than 4 x 8 x 2."""
    layout = Layout.from_replicas([1, 1, 1, 1])
    ops = {r: build("1f1b", layout, r, 0, 8, 1) for r in range(4)}
    assert simulate(layout, ops) < 0.6 * 4 * 8 * 4
