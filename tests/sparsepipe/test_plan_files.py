"""The profile and plan files (the contracts with the profiler and the runtime), and the baselines."""

from __future__ import annotations

import itertools
import json

import pytest

from plinth import ConfigError
from plinth_sparsepipe.pipe.baselines import balanced_cuts, data_parallel_plan, even_split_plan
from plinth_sparsepipe.pipe.costs import CostModel
from plinth_sparsepipe.pipe.plan import PLAN_FORMAT, load_plan, save_plan
from plinth_sparsepipe.pipe.planner import make_plan
from plinth_sparsepipe.pipe.profile import PROFILE_FORMAT, load_profile, save_profile

from .plan_helpers import cluster, profile


def test_profile_round_trip_and_scaling(tmp_path):
    p = profile([0.5, 1.5], [10, 20], feats=[100, 0], coords=[16, 0], device_type="rtx", batch_size=64)
    path = save_profile(p, tmp_path / "p.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == PROFILE_FORMAT and raw["layers"][0]["output_coordinate_bytes"] == 16
    back = load_profile(path)
    assert back == p and back.total_time_s == pytest.approx(2.0)
    assert back.layers[0].output_bytes == 116
    slow = back.scaled(0.5, "titan-xp")
    assert slow.device_type == "titan-xp" and slow.source == "scaled" and slow.meta["scaled_from"] == "rtx"
    assert [x.forward_s for x in slow.layers] == [1.0, 3.0]
    assert [x.parameter_bytes for x in slow.layers] == [10, 20]  # sizes do not change with speed
    assert back.with_total_time(1.47).total_time_s == pytest.approx(1.47)
    with pytest.raises(ValueError):
        back.scaled(0)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("format"), r"p.json: format: expected 'plinth-sparsepipe-profile/1', got None"),
    (lambda d: d.update(batch_size=0), r"p.json: batch_size: Input should be greater than 0"),
    (lambda d: d["layers"][1].update(backward_s=-1), r"p.json: layers\[1\].backward_s: Input should be greater"),
    (lambda d: d["layers"][0].pop("parameter_bytes"), r"p.json: layers\[0\].parameter_bytes: Field required"),
    (lambda d: d["layers"][1].update(name="l0"), r"p.json: layers: layer name 'l0' at index 1 repeats index 0"),
    (lambda d: d["layers"][0].update(forward_ms=3), r"p.json: layers\[0\].forward_ms: unknown key"),
    (lambda d: d.update(layers=[]), r"p.json: layers: List should have at least 1 item"),
    (lambda d: d.update(source="guess"), r"p.json: source: Input should be 'measured', 'estimate' or 'scaled'"),
])
def test_bad_profiles_name_file_and_field(tmp_path, edit, message):
    data = profile([1, 2], [3, 4]).to_json()
    edit(data)
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_profile(tmp_path / "p.json")


def test_unreadable_profiles(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"p.json: not valid JSON: line 1 column 2"):
        load_profile(tmp_path / "p.json")
    with pytest.raises(ConfigError, match="no such profile file"):
        load_profile(tmp_path / "none.json")


def test_plan_file_round_trip_and_ranks(tmp_path):
    fast = profile([3, 1, 1, 1], [10] * 4, device_type="fast")
    c = cluster([("s", 1.0, {"fast": 1, "slow": 2})], {"fast": fast, "slow": fast.scaled(0.5, "slow")})
    plan = make_plan(c)
    path = save_plan(plan, tmp_path / "plan.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == PLAN_FORMAT and raw["kind"] == "planned"
    assert set(raw["compared_to"]) == {"data-parallel", "even-split"}
    assert [d["rank"] for s in raw["stages"] for d in s["devices"]] == list(range(raw["world_size"]))
    again = load_plan(path)
    assert again == plan
    assert again.stages[0].first_layer == "l0" and again.stages[-1].last_layer == "l3"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="x"), r"plan.json: format: expected 'plinth-sparsepipe-plan/1', got 'x'"),
    (lambda d: d["stages"][0].update(stop=1), r"plan.json: stages\[1\]: layers \[3, 4\) do not follow layer 1"),
    (lambda d: d["stages"][0].update(replicas=3), r"plan.json: stages\[0\].replicas: 3 != 1 devices"),
    (lambda d: d["stages"][1]["devices"][0].update(rank=7), r"plan.json: stages\[\*\].devices\[\*\].rank: must be"),
    (lambda d: d.update(kind="fastest"), r"plan.json: kind: Input should be 'planned', 'even-split'"),
    (lambda d: d.pop("world_size"), r"plan.json: world_size: Field required"),
])
def test_bad_plan_files(tmp_path, edit, message):
    c = cluster([("s", 1.0, {"a": 2})], {"a": profile([1, 2, 3, 4], [1, 1, 1, 1])})
    data = make_plan(c).to_json()
    assert [(s["start"], s["stop"]) for s in data["stages"]] == [(0, 3), (3, 4)]
    edit(data)
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_plan(tmp_path / "plan.json")


def test_balanced_cuts_match_exhaustive_search():
    times = [5, 1, 1, 4, 2, 2, 7, 1]
    prefix = list(itertools.accumulate([0, *times]))
    for parts in range(1, len(times) + 1):
        cuts = balanced_cuts(prefix, parts)
        assert cuts[0] == 0 and cuts[-1] == len(times) and len(cuts) == parts + 1
        got = max(prefix[b] - prefix[a] for a, b in zip(cuts, cuts[1:]))
        want = min(
            max(prefix[b] - prefix[a] for a, b in zip((0, *c), (*c, len(times))))
            for c in itertools.combinations(range(1, len(times)), parts - 1)
        )
        assert got == want


def test_baselines_are_plans_of_their_kind():
    fast = profile([3, 1, 1, 1], [10] * 4, device_type="fast")
    c = cluster([("s", 1.0, {"fast": 1, "slow": 2})], {"fast": fast, "slow": fast.scaled(0.5, "slow")})
    model = CostModel(c)
    dp = data_parallel_plan(model)
    assert dp.kind == "data-parallel" and len(dp.stages) == 1 and dp.world_size == 3
    assert dp.stages[0].compute_type == "slow"  # synchronous replicas wait for the slowest
    assert dp.time_per_batch_s == pytest.approx((12 + 2 * 2 * 40 / 3) / 3)
    even = even_split_plan(model)
    assert even.kind == "even-split" and [s.replicas for s in even.stages] == [1, 1, 1]
    assert [(s.start, s.stop) for s in even.stages] == [(0, 1), (1, 2), (2, 4)]  # 3 | 1 | 1 1 on the fast profile
    assert even.time_per_batch_s == pytest.approx(4.0)  # layers 2-3 on a slow device: 2 * 2
    few = even_split_plan(CostModel(cluster([("s", 1.0, {"a": 5})], {"a": profile([1, 1], [0, 0])})))
    assert len(few.stages) == 2 and len(few.unused_devices) == 3


def test_evaluate_refuses_malformed_plans():
    c = cluster([("s", 1.0, {"a": 2})], {"a": profile([1, 1], [0, 0])})
    model = CostModel(c)
    a, b = c.devices()
    for stages, message in [
        ([(0, 1, [a])], "end at layer 1"), ([(0, 1, [a]), (0, 2, [b])], "contiguously"),
        ([(0, 1, [a]), (1, 2, [a])], "in two stages"), ([(0, 2, [])], "no device"), ([], "at least one"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.evaluate(stages)
