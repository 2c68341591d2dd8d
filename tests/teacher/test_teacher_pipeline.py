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
""")
    run_dir = tmp_path / "run"
    res = plinth_cmd("run", str(pipeline), "--run-dir", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stage = manifest["stages"]["data"]
    assert stage["status"] == "complete" and set(stage["outputs"]) == {"sft", "kto", "eval", "stats", "decisions"}
    sft = [json.loads(x) for x in (run_dir / stage["outputs"]["sft"]["path"]).read_text().splitlines()]
    assert len(sft) == 4 and set(sft[0]) == {"prompt", "completion"}
    res = plinth_cmd("run", str(pipeline), "--run-dir", str(run_dir))
    assert res.returncode == 0 and "unchanged, skipped" in res.stderr
