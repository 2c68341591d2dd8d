"""The pipeline runtime on real processes (gloo, 3 ranks on this machine, one thread each).

One launch runs every scenario of `pipe_scenarios.suite3` in order (about 10 s of rank time after a single torch
import): sparse tensors of changing shape between processes, GPipe against one process, 1F1B's weight stashing
against PipeDream's rules computed directly, replicas, and resuming from a rank's state_dict.
"""

from __future__ import annotations

import pytest
import torch

from .pipe_harness import explain, folder_of, launch


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe")
    procs = launch(["suite3"], 3, out, deadline_s=240)["suite3"]
    if any(p.returncode != 0 for p in procs):
        pytest.fail(f"the 3-rank suite failed:\n{explain(procs)}")

    def load(name: str, rank: int):
        return torch.load(folder_of(out, "suite3") / f"{name}-rank{rank}.pt", weights_only=False)

    return load


def test_sparse_tensors_of_changing_shape_cross_processes(suite):
    from .pipe_harness import expected_messages  # the same messages, rebuilt here

    got = suite("comm", 1)
    # kind, value (coords, feats, dtype, stride, batch offsets; kernel maps rebuilt on arrival) and target agree
    assert got["checks"] == [(g, True, True, True) for g in range(8)]
    assert got["first_ok"]
    # the inbox thread had received while the stage slept: nothing left to wait for
    assert got["wait_s"] < 0.2
    sent = suite("comm", 0)
    assert sent["send_s"] < 0.5  # isend of 8 MB returned while the receiver slept for 1 s
    grads = sent["grads"]
    for g, (kind, value, _) in enumerate(expected_messages()[:-1]):  # only feature gradients come back
        feats = value.feats if hasattr(value, "feats") else value
        assert torch.equal(grads[g], feats * 2)
    assert sent["bytes"]["activation"] > 8_000_000


@pytest.mark.parametrize("name,world,replicated", [("gpipe-1-1-1", 3, False), ("gpipe-2-1", 3, True)])
def test_gpipe_matches_one_process(suite, name, world, replicated):
    """Weights after 3 steps equal one process accumulating the same micro-batches (fp tolerance); so do the
    reported losses and, without replicas, the batch-norm running statistics."""
    ref = suite(name, 0)
    reference = ref["reference"]
    assert ref["losses"] == pytest.approx(ref["reference_losses"], rel=1e-5)
    covered = set()
    for rank in range(world):
        part = suite(name, rank)
        for key, value in part["state"].items():
            if key.endswith("num_batches_tracked"):
                continue
            if replicated and "running_" in key:
                continue  # replicas average their statistics; one process updates them micro-batch by micro-batch
            torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-5, msg=f"rank {rank}: {key}")
            covered.add(key)
    assert {k for k in reference if "weight" in k or "bias" in k} <= covered
    if replicated:  # the two stage-0 replicas hold the same weights and statistics
        a, b = suite(name, 0)["state"], suite(name, 1)["state"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    # every parameter changed: the test is not comparing two untrained models
    assert suite(name, world - 1)["metrics"]["updates"] == 3


def test_one_f_one_b_keeps_warm_up_plus_one_weight_versions(suite):
    three = [suite("1f1b-1-1-1", r)["metrics"] for r in range(3)]
    assert [m["peak_weight_versions"] for m in three] == [3, 2, 0]  # warm-ups 2, 1, 0 (stage 2 needs no copy)
    assert [m["peak_in_flight"] for m in three] == [3, 2, 1]
    assert [m["updates"] for m in three] == [6, 6, 6]
    # per step (between two ends of step): the forwards each rank ran, its warm-up first, none left in the drain
    assert [m["step_forwards"] for m in three] == [[3, 1, 1, 1, 0, 0], [2, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    for m in three:  # and the compute of those steps, emulated and own (CPU) time, adding up to the whole run's
        assert len(m["step_compute_s"]) == len(m["step_base_compute_s"]) == 6
        assert all(x > 0 for x in m["step_base_compute_s"])  # every step has backwards
        assert sum(m["step_compute_s"]) == pytest.approx(m["compute_s"], rel=1e-6)
    reports = suite("1f1b-1-1-1", 0)["reports"]
    assert [r["step"] for r in reports] == list(range(6)) and all(r["loss"] > 0 for r in reports)
    assert all(r["samples"] == 2 for r in reports)

    # stage 0 alone, stage 1 on 2 replicas: 2 micro-batches per step, each replica updates once per step
    rep = [suite("1f1b-1-2", r)["metrics"] for r in range(3)]
    assert [m["updates"] for m in rep] == [8, 4, 4]
    assert [m["forwards"] for m in rep] == [8, 4, 4]
    assert rep[0]["peak_weight_versions"] == 3  # warm-up (3 ranks - 1) // 1
    assert rep[1]["allreduce_bytes"] > 0 and rep[0]["allreduce_bytes"] == 0
    r1, r2 = suite("1f1b-1-2", 1)["state"], suite("1f1b-1-2", 2)["state"]
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    # each direction between neighbours travels in a group of its own (NCCL would otherwise share one stream), and
    # every inbox receives in its link's group; a layout smaller than the world shares the default group
    from plinth_sparsepipe.pipe.comm import TAG_BACKWARD as bwd, TAG_FORWARD as fwd
    assert suite("1f1b-1-2", 0)["links"] == [(0, 1, fwd), (0, 2, fwd), (1, 0, bwd), (2, 0, bwd)]
    assert all(all(suite("1f1b-1-2", r)["inbox_groups"]) for r in range(3))
    assert suite("1f1b-1-1-1", 1)["links"] == [(0, 1, fwd), (1, 0, bwd), (1, 2, fwd), (2, 1, bwd)]
    assert suite("stash", 0)["links"] == []


def test_weight_stashing_follows_pipedream(suite):
    """Two stages, plain SGD: the pipeline ends where PipeDream's rules say (stage 0's micro-batch j forward and
    backward on version max(j-1, 0)), and clearly not where backwards on the live weights would."""
    ref = suite("stash-reference", 0)
    s0, s1 = suite("stash", 0), suite("stash", 1)
    assert s0["metrics"]["peak_weight_versions"] == 2
    for stage, part in ((0, s0), (1, s1)):
        for key, value in part["state"].items():
            torch.testing.assert_close(value, ref["stash"][f"stage{stage}"][key], rtol=1e-4, atol=1e-6)
    gap = max((s0["state"][k] - ref["live"]["stage0"][k]).abs().max().item() for k in s0["state"])
    assert gap > 1e-4


@pytest.mark.parametrize("name", ["resume-1f1b", "resume-gpipe"])
def test_resumed_ranks_end_where_an_uninterrupted_run_ends(suite, name):
    """2 steps, state_dict, a fresh runtime loads it and runs 2 more: bit-for-bit the uninterrupted result."""
    for rank in range(3):
        got = suite(name, rank)
        assert got["updates"][0] == got["updates"][1] > 0
        assert all(torch.equal(got["a"][k], got["c"][k]) for k in got["a"])
        assert any(not torch.equal(got["a"][k], got["b"][k]) for k in got["a"])  # the last 2 steps did change it
