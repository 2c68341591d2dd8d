"""The teacher stage through the real `plinth run` (TOML sub-tables, manifest, skip on re-run)."""

import json


def test_plinth_run_teacher_stage(tmp_path, tiny_model, plinth_cmd):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f"""
[run]
name = "t"

[stages.data]
slot = "generator"
component = "teacher"
backend = "gym"
seeds = {{ tasks = ["chain_sum"], size = 5 }}
output = {{ eval_size = 1, sft_format = "prompt_completion" }}

[stages.data.kto]
student = "{tiny_model}"
samples = 2
max_tokens = 8

[stages.onpolicy]
slot = "generator"
component = "teacher"
backend = "gym"
kto = {{ samples = 3, max_tokens = 8, prompts = 3 }}
inputs = {{ items = "data.items", student = {{ path = "{tiny_model}", kind = "model" }} }}
""")
    run_dir = tmp_path / "run"
    res = plinth_cmd("run", str(pipeline), "--run-dir", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stage = manifest["stages"]["data"]
    assert stage["status"] == "complete"
    assert set(stage["outputs"]) == {"sft", "kto", "eval", "items", "stats", "decisions"}
    sft = [json.loads(x) for x in (run_dir / stage["outputs"]["sft"]["path"]).read_text().splitlines()]
    assert len(sft) == 4 and set(sft[0]) == {"prompt", "completion"}
    decon = stage["outputs"]["eval"]["meta"]["decontamination"]
    assert decon["held_out"] == 1 and decon["training_prompts_checked"] == 4 + decon["training_prompts_removed"]

    # the second stage: only step 5, on the first stage's accepted prompts, answered by the `student` input
    items = [json.loads(x) for x in (run_dir / stage["outputs"]["items"]["path"]).read_text().splitlines()]
    assert [i["prompt"] for i in items] == [r["prompt"] for r in sft] and items[0]["meta"]["task"] == "chain_sum"
    onp = manifest["stages"]["onpolicy"]
    assert onp["status"] == "complete" and set(onp["outputs"]) == {"kto", "stats"}
    stats = json.loads((run_dir / onp["outputs"]["stats"]["path"]).read_text())
    assert stats["items"] == 4 and stats["kto"]["prompts"] == 3 and stats["kto"]["samples_per_prompt"] == 3
    kto = [json.loads(x) for x in (run_dir / onp["outputs"]["kto"]["path"]).read_text().splitlines()]
    kto_prompts = {r["prompt"][-1]["content"] for r in kto}
    assert kto_prompts <= {i["prompt"] for i in items[:3]} and {r["label"] for r in kto} == {True, False}
    res = plinth_cmd("run", str(pipeline), "--run-dir", str(run_dir))
    assert res.returncode == 0 and "unchanged, skipped" in res.stderr


def test_seeds_draw_disjoint_reasoning_gym_items():
    """reasoning-gym builds item i of its seed s from s + i (its seed 1 is seed 0 shifted by one item); plinth's
    seeds 0 and 1 share no item."""
    import reasoning_gym

    from plinth_teacher.gym import gym_items

    raw0, raw1 = (reasoning_gym.create_dataset("basic_arithmetic", size=40, seed=s) for s in (0, 1))
    assert [raw1[i]["question"] for i in range(39)] == [raw0[i + 1]["question"] for i in range(39)]
    ours0, ours1 = (gym_items(["basic_arithmetic"], 40, s) for s in (0, 1))
    assert [i.prompt for i in ours0] == [raw0[i]["question"] for i in range(40)]  # seed 0 is unchanged
    shared = {i.prompt for i in ours0} & {i.prompt for i in ours1}
    assert len(shared) <= 2  # only chance repeats of short problems, not a shifted copy (39 of 40)
