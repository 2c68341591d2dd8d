"""examples/sparsepipe-shapes.toml through `plinth run`, shrunk with --set: the plan is printed, the pipelined model
(2 processes: this CPU and an emulated half-speed device) and the one-process baseline are both scored, and the
pipeline's figures are written. Slow (two trainer stages, one on torchrun); test_pipe_run.py covers the same path
in the default run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ['shapes.classes=["sphere", "box", "torus"]', "shapes.train_per_class=8", "shapes.test_per_class=4",
         "shapes.num_points=512", "shapes.cache=false", "single.epochs=2", "pipelined.epochs=2",
         "single.num_points=512", "pipelined.num_points=512"]


@pytest.mark.slow
def test_sparsepipe_example_runs(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    run = tmp_path / "run"
    args = [x for s in SMALL for x in ("--set", s)]
    res = plinth_cmd("run", "examples/sparsepipe-shapes.toml", "--run-dir", str(run), *args, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "planned plan for cpu-2" in res.stderr  # printed when the pipelined stage starts
    models = json.loads((run / "stages/eval/out/metrics.json").read_text())["models"]
    assert set(models) == {"single", "pipelined"}
    for m in models.values():
        assert m["metrics"]["shapes/accuracy"]["n"] == 12
        assert m["metrics"]["train/seconds_per_epoch"]["value"] > 0
    summary = json.loads((run / "stages/pipelined/out/pipeline.json").read_text())
    assert len(summary["ranks"]) == 2 and summary["prediction"]["kind"] == "planned"
    assert {r["speed"] for r in summary["ranks"]} == {1.0, 0.5}
