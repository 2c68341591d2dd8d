"""The two point-cloud examples, shrunk with --set to CI time, through `plinth run`: they learn (accuracy far above
chance) and `plinth report` shows the sparse and the dense model side by side with their training cost."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SHAPES_SMALL = [
    'shapes.classes=["sphere", "box", "torus", "cone"]', "shapes.train_per_class=16", "shapes.test_per_class=10",
    "shapes.num_points=1024", "shapes.cache=false",
    "sparse.epochs=6", "sparse.batch_size=8", "sparse.threads=1", "sparse.model.width=0.25",
    "dense.epochs=2", "dense.batch_size=8", "dense.threads=1", "dense.grid_points=256",
    "eval.threads=1",
]
SEG_SMALL = [
    'scenes.classes=["sphere", "box"]', "scenes.train_size=12", "scenes.test_size=4", "scenes.num_points=2048",
    "scenes.cache=false", "unet.voxel_size=0.05", "unet.num_points=2048", "unet.epochs=4", "unet.batch_size=4",
    "unet.threads=1", "unet.model.width=0.25", "eval.threads=1",
]


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def run_example(name: str, overrides: list[str], tmp_path: Path, plinth_cmd) -> tuple[Path, dict]:
    """`plinth run examples/<name>` shrunk by `overrides`; (run folder, the evaluator's models)."""
    run = tmp_path / "run"
    res = plinth_cmd("run", str(REPO / "examples" / name), "--run-dir", str(run), *sets(overrides), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return run, json.loads((run / "stages/eval/out/metrics.json").read_text())["models"]


def test_shapes_example_sparse_and_dense_through_plinth_report(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    run, models = run_example("pointcloud-shapes.toml", SHAPES_SMALL, tmp_path, plinth_cmd)
    assert list(models) == ["dense", "sparse"] and models["dense"]["role"] == "baseline"
    sparse = models["sparse"]["metrics"]
    assert sparse["shapes/accuracy"]["value"] >= 0.6  # chance is 0.25 (4 classes, 10 held-out shapes each)
    assert sparse["shapes/accuracy"]["n"] == 40
    for m in models.values():
        assert m["metrics"]["train/seconds_per_epoch"]["value"] > 0 and m["metrics"]["train/peak_rss_mb"]["value"] > 0

    res = plinth_cmd("report", str(run), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = (run / "report" / "report.md").read_text()
    for text in ("dense (baseline)", "| sparse |", "shapes/accuracy", "shapes/mean_class_accuracy",
                 "train/seconds_per_epoch", "train/peak_rss_mb", "eval/inference_ms_per_sample"):
        assert text in table, text
    assert (run / "report" / "report.html").stat().st_size > 1000


def test_segmentation_example_reports_miou(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    run, models = run_example("pointcloud-seg.toml", SEG_SMALL, tmp_path, plinth_cmd)
    m = models["unet"]["metrics"]
    assert m["scenes/accuracy"]["value"] > 0.7 and m["scenes/miou"]["value"] > 0.3  # 3 classes: floor, sphere, box
    assert "scenes/miou" in (run / "report" / "report.md").read_text()
    per_class = (run / "stages/eval/out/samples/per_class.md").read_text()
    assert "| floor |" in per_class and "| box |" in per_class
