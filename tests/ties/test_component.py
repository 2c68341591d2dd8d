"""The mergers as pipeline components: registration, per-model parameters by label, a real pipeline run."""

from __future__ import annotations

import json

import pytest
import torch

from plinth import Artifact, ConfigError
from plinth.plugins import load_plugins
from plinth.testing import make_context
from plinth_ties import ModelRef, merge

from .conftest import tensors_of


def inputs(base, fts):
    return {
        "base": Artifact("model", base, {"label": "base"}),
        "models": [
            Artifact("model", fts[0], {"stage": "sft", "output": "model"}),
            Artifact("model", fts[1], {"stage": "kto", "output": "model"}),
        ],
    }


def test_all_methods_registered():
    pm = load_plugins()
    for name in ("ties", "dare_ties", "dare_linear", "task_arithmetic", "linear"):
        cls = pm.get("merger", name)
        assert cls.merge_method == name


def test_stage_with_per_model_tables_matches_the_engine(tiny_models, tmp_path):
    base, fts = tiny_models
    cls = load_plugins().get("merger", "ties")
    comp = cls({"weight": {"sft": 0.7, "kto.model": 0.3}, "density": [0.4, 0.6], "lambda": 1.2, "trim": "global"})
    ctx = make_context(tmp_path / "run", stage="merge", inputs=inputs(base, fts))
    out = comp.run(ctx)
    art = out["model"]
    assert art.kind == "model" and art.path == ctx.output_dir / "model"
    assert art.meta["models"] == ["sft.model", "kto.model"] and art.meta["method"] == "ties"
    want = merge("ties", [ModelRef(fts[0], "a", 0.7, 0.4), ModelRef(fts[1], "b", 0.3, 0.6)], tmp_path / "direct",
                 base, lambda_=1.2, trim="global", hash_inputs=False)
    got, exp = tensors_of(art.path), tensors_of(want.path)
    assert all(torch.equal(got[k], exp[k]) for k in exp)
    rec = json.loads((art.path / "merge.json").read_text())
    assert [m["weight"] for m in rec["models"]] == [0.7, 0.3]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("merge/seconds" in json.dumps(m) for m in metrics)


def test_linear_stage_needs_no_base(tiny_models, tmp_path):
    base, fts = tiny_models
    ins = inputs(base, fts)
    del ins["base"]
    comp = load_plugins().get("merger", "linear")({"weight": [0.05, 0.95], "files_from": "kto"})
    art = comp.run(make_context(tmp_path, stage="fuse", inputs=ins))["model"]
    assert json.loads((art.path / "merge.json").read_text())["files_from"] == "kto.model"
    a, b, got = tensors_of(fts[0]), tensors_of(fts[1]), tensors_of(art.path)
    for k in got:
        assert torch.allclose(got[k], 0.05 * a[k] + 0.95 * b[k], atol=1e-6)


@pytest.mark.parametrize(
    "config,match",
    [
        ({"weight": [1.0]}, r"stage 'merge': `weight` lists 1 values but `models` has 2"),
        ({"density": {"dpo": 0.5}}, r"stage 'merge': `density` names 'dpo', which is none of the models"),
        ({"base": "/somewhere"}, r"stage 'merge': base given both as an input and as `base"),
        ({"files_from": "dpo"}, r"stage 'merge': files_from 'dpo' is none of the models"),
    ],
)
def test_stage_config_errors(tiny_models, tmp_path, config, match):
    base, fts = tiny_models
    comp = load_plugins().get("merger", "ties")(config)
    ctx = make_context(tmp_path, stage="merge", inputs=inputs(base, fts))
    with pytest.raises(ConfigError, match=match):
        comp.run(ctx)
    assert not (ctx.output_dir / "model").exists()


def test_unknown_key_rejected_by_config():
    from pydantic import ValidationError

    cls = load_plugins().get("merger", "ties")
    with pytest.raises(ValidationError, match="densty"):
        cls({"densty": 0.5})
    with pytest.raises(ValidationError, match="lambda"):
        load_plugins().get("merger", "linear")({"lambda": 0.5})  # linear has no λ


def test_pipeline_run(tiny_models, tmp_path):
    from plinth.pipeline import build_plan
    from plinth.registry import Registry
    from plinth.rundir import load_manifest
    from plinth.runner import Run

    base, fts = tiny_models
    pipe = tmp_path / "merge.toml"
    pipe.write_text(f"""
[run]
name = "merge"

[stages.merge]
slot = "merger"
component = "ties"
base = "{base}"
density = {{ a = 0.3, b = 0.5 }}
inputs = {{ models = [{{ path = "{fts[0]}", label = "a" }}, {{ path = "{fts[1]}", label = "b" }}] }}

[stages.fuse]
slot = "merger"
component = "linear"
weight = [0.5, 0.5]
inputs = {{ models = ["merge.model", {{ path = "{fts[2]}", label = "c" }}] }}
""")
    plan = build_plan(pipe, load_plugins(), Registry(None), run_dir=tmp_path / "run")
    assert Run(plan, load_plugins(), echo=False).execute() == "complete"
    manifest = load_manifest(tmp_path / "run")
    for stage in ("merge", "fuse"):
        assert manifest["stages"][stage]["status"] == "complete"
    rec = json.loads((tmp_path / "run" / manifest["stages"]["fuse"]["outputs"]["model"]["path"] / "merge.json").read_text())
    assert [m["label"] for m in rec["models"]] == ["merge.model", "c"]
    # the earlier stage's output was hashed by the runner: reused, not re-read; the external input is hashed here
    assert rec["models"][0]["content_hash"] == manifest["stages"]["merge"]["outputs"]["model"]["meta"]["hash"]
    assert len(rec["models"][1]["sha256"]) == 64
