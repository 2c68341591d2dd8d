"""The `shapes` and `scenes` generators as pipeline components: outputs, meta.json, determinism, the cache
(reused by a second stage and a second pipeline, rebuilt when the config changes), and a real `plinth run`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from plinth.testing import make_context
from plinth_sparsepipe.data import ScenesGenerator, ShapesGenerator, load_split

SMALL = {"classes": ["sphere", "box", "torus"], "train_per_class": 4, "test_per_class": 2, "num_points": 256}


def test_shapes_outputs_meta_and_determinism(tmp_path):
    ctx = make_context(tmp_path / "a", stage="shapes")
    out = ShapesGenerator({**SMALL, "normals": True, "cache": False}).generate(ctx)
    assert set(out) == {"train", "test"} and out["train"].kind == "dataset"
    assert out["train"].meta["rows"] == 12 and out["test"].meta["rows"] == 6
    meta = json.loads((ctx.output_dir / "meta.json").read_text())
    assert meta["schema"] == "plinth.pointcloud/v1" and meta["classes"] == SMALL["classes"]
    assert meta["splits"]["train"]["per_class"] == {"sphere": 4, "box": 4, "torus": 4}
    assert meta["generator"]["config"]["num_points"] == 256 and meta["generator"]["seconds"] > 0
    train = load_split(out["train"].path)
    assert train[0].normals.shape == (256, 3) and [train[i].label for i in range(6)] == [0, 1, 2, 0, 1, 2]
    again = ShapesGenerator({**SMALL, "normals": True, "cache": False}).generate(make_context(tmp_path / "b",
                                                                                             stage="shapes"))
    np.testing.assert_array_equal(load_split(again["train"].path).points, train.points)
    test = load_split(out["test"].path)
    assert not np.array_equal(test[0].points, train[0].points)  # the splits draw from different streams


def test_cache_is_reused_across_pipelines_and_rebuilt_on_change(tmp_path, monkeypatch):
    shared = str(tmp_path / "shared-cache")
    first = ShapesGenerator({**SMALL, "cache_dir": shared}).generate(make_context(tmp_path / "run1", stage="data"))
    assert first["train"].meta["cached"] is False
    from plinth_sparsepipe.data import procedural

    def boom(*a, **k):
        raise AssertionError("a cached dataset was generated again")

    monkeypatch.setattr(procedural, "make_shape", boom)
    ctx2 = make_context(tmp_path / "run2", stage="other")
    second = ShapesGenerator({**SMALL, "cache_dir": shared}).generate(ctx2)
    assert second["train"].meta["cached"] is True
    assert second["train"].path.read_bytes() == first["train"].path.read_bytes()
    with pytest.raises(AssertionError, match="generated again"):
        ShapesGenerator({**SMALL, "cache_dir": shared, "seed": 1}).generate(make_context(tmp_path / "run3"))
    assert len([p for p in (tmp_path / "shared-cache").iterdir() if not p.name.startswith(".")]) == 1


def test_default_cache_lives_in_the_run_dir(tmp_path):
    ctx = make_context(tmp_path, stage="shapes")
    ShapesGenerator(SMALL).generate(ctx)
    assert ShapesGenerator(SMALL).generate(ctx)["test"].meta["cached"] is True
    assert any(p.name.startswith("shapes-") for p in (tmp_path / "cache" / "shapes").iterdir())


def test_config_errors():
    with pytest.raises(ValidationError, match="unknown shape class"):
        ShapesGenerator({"classes": ["sphere", "blob"]})
    with pytest.raises(ValidationError, match="distinct"):
        ShapesGenerator({"classes": ["sphere", "sphere"]})
    with pytest.raises(ValidationError, match="objects"):
        ScenesGenerator({"objects": [4, 2]})


def test_scenes_generator_labels(tmp_path):
    ctx = make_context(tmp_path, stage="scenes")
    out = ScenesGenerator({"classes": ["sphere", "box"], "train_size": 3, "test_size": 2, "num_points": 1024,
                           "cache": False}).generate(ctx)
    ds = load_split(out["train"].path)
    assert ds.task == "segmentation" and ds.classes == ["floor", "sphere", "box"] and len(ds) == 3
    assert ds[0].point_labels.shape == (1024,) and set(np.unique(ds.point_labels)) <= {0, 1, 2}
    meta = json.loads((ctx.output_dir / "meta.json").read_text())
    assert meta["ignore_label"] == -1 and sum(meta["splits"]["train"]["per_class"].values()) == 3 * 1024


def test_plinth_run_and_validate(tmp_path, plinth_cmd):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        '[run]\nname = "pc"\n\n[stages.shapes]\nslot = "generator"\ncomponent = "shapes"\n'
        'classes = ["cone", "pyramid"]\ntrain_per_class = 3\ntest_per_class = 1\nnum_points = 128\n')
    res = plinth_cmd("run", str(pipeline), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    outs = manifest["stages"]["shapes"]["outputs"]
    assert set(outs) == {"train", "test"}
    assert len(load_split(tmp_path / "run" / outs["train"]["path"])) == 6
    bad = tmp_path / "bad.toml"
    bad.write_text(pipeline.read_text().replace('"cone"', '"cones"'))
    res = plinth_cmd("validate", str(bad))
    assert res.returncode != 0 and "unknown shape class(es) ['cones']" in res.stdout + res.stderr
    assert "Traceback" not in res.stderr
