"""Nonsense numbers are errors at validate time, not silent defaults (issue 12): each case used to validate and
then train, merge or evaluate anyway (or fail only once the stage ran)."""

from __future__ import annotations

import json

import pytest

from plinth.errors import ConfigError
from plinth.pipeline import build_plan
from plinth.registry import Registry


def _models(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    return 'inputs = { models = [{ path = "a" }, { path = "b" }] }\nbase = "smollm2-135m-instruct"\n'


CASES = [
    # (slot, component, parameters, expected in the message)
    ("trainer", "sft", "max_steps = 0", "stages.s.max_steps: max_steps = 0 trains nothing"),
    ("trainer", "sft", "max_steps = -5", "stages.s.max_steps: Input should be greater than or equal to -1"),
    ("trainer", "kto", "max_steps = 0", "stages.s.max_steps: max_steps = 0 trains nothing"),
    ("trainer", "kto", "desirable_weight = -1.0", "stages.s.desirable_weight"),
    ("trainer", "kto", "desirable_weight = 0", "greater than 0"),
    ("merger", "ties", "density = 1.5", "stages.s.density"),
    ("merger", "ties", "density = [0.5, 0.0]", "stages.s.density"),
    ("merger", "dare_ties", "density = 0", "stages.s.density"),
    ("merger", "dare_linear", "density = { a = 2.0 }", "stages.s.density"),
    ("merger", "linear", "weight = [1.0, -1.0]", "stages.s.weight: the weights [1.0, -1.0] sum to 0"),
    ("merger", "linear", "weight = 0.0", "stages.s.weight: every weight is 0"),
    ("merger", "ties", "weight = [0.0, 0.0]", "stages.s.weight: every weight is 0"),
    ("merger", "task_arithmetic", "weight = [1.0, 2.0, 3.0]", "stages.s.weight: lists 3 values but `models` has 2"),
    ("evaluator", "perplexity", 'task_file = "rows.jsonl"\ncontext = 512', "context (512) must be smaller than"),
    ("generator", "shapes", "scale = [1.5, 0.5]", "stages.s.scale: [1.5, 0.5]: a range [lo, hi] needs 0 < lo <= hi"),
    ("generator", "scenes", "object_scale = [0.0, 0.5]", "stages.s.object_scale"),
    ("trainer", "pointcloud", 'model = { name = "sparse_resnet", blocks = [1, 0] }', "stages.s.model.sparse_resnet.blocks.1"),
]


@pytest.mark.parametrize("slot, component, params, expected", CASES, ids=[f"{c[1]}:{c[2]}" for c in CASES])
def test_nonsense_numbers_are_errors(tmp_path, plugins, slot, component, params, expected):
    (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n')
    inputs = ""
    if slot == "merger":
        inputs = _models(tmp_path)
    elif slot == "trainer":
        inputs = 'inputs = { dataset = { path = "rows.jsonl" } }\n'
    elif slot == "evaluator":
        inputs = 'baseline = "smollm2-135m-instruct"\n'
    text = f'[stages.s]\nslot = "{slot}"\ncomponent = "{component}"\n{params}\n{inputs}'
    if component == "linear":
        text = text.replace('base = "smollm2-135m-instruct"\n', "")
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        build_plan(tmp_path / "p.toml", plugins, Registry(None))
    assert expected in str(exc.value), str(exc.value)


def test_sensible_numbers_still_validate(tmp_path, plugins):
    text = f'[stages.s]\nslot = "merger"\ncomponent = "linear"\nweight = [0.05, 0.95]\n{_models(tmp_path)}'
    (tmp_path / "p.toml").write_text(text.replace('base = "smollm2-135m-instruct"\n', ""))
    build_plan(tmp_path / "p.toml", plugins, Registry(None))
    text = f'[stages.s]\nslot = "merger"\ncomponent = "linear"\nweight = [1.0, -1.0]\nnormalize = false\n'
    (tmp_path / "p.toml").write_text(text + 'inputs = { models = [{ path = "a" }, { path = "b" }] }\n')
    build_plan(tmp_path / "p.toml", plugins, Registry(None))  # a plain difference is a legitimate request


def test_weights_given_by_label_are_checked_when_the_merge_runs(tmp_path):
    """{label = w} tables are resolved against the models' labels only at run time; the same rule applies there."""
    from plinth import Artifact
    from plinth.testing import make_context
    from plinth_ties.mergers import LinearMerger

    _models(tmp_path)
    arts = [Artifact("model", tmp_path / n, {"label": n}) for n in ("a", "b")]
    ctx = make_context(tmp_path / "run", inputs={"models": arts})
    merger = LinearMerger({"weight": {"a": 1.0, "b": -1.0}})
    with pytest.raises(ConfigError, match="sum to 0"):
        merger.merge(ctx)
