"""lm-eval adapter: a local custom task YAML on a plinth model folder, results mapped to plinth metrics."""

from __future__ import annotations

import json

import pytest

from plinth import ConfigError

from .conftest import context, model_art, read_metrics, read_samples

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install lm-eval==0.4.13)")

from plinth_evals.lm_eval_adapter import LMEval  # noqa: E402

TASK_YAML = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture
def task_dir(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    rows = [{"question": f"q{i}", "choices": ["A", "B"], "label": lab} for i, lab in enumerate([1, 0, 1, 1])]
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny_mc.yaml").write_text(TASK_YAML.format(data=data))
    return folder


def test_custom_task_on_model_folder(tmp_path, task_dir, picks_b):
    out = LMEval({"tasks": ["tiny_mc"], "include_path": [str(task_dir)], "include_defaults": False,
                  "batch_size": 4}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
    doc = read_metrics(out)
    assert doc["evaluator"] == "lm-eval"
    m = doc["models"]["b"]["metrics"]["tiny_mc/acc"]
    assert m["value"] == 0.75 and m["n"] == 4 and m["ci_method"] == "wilson" and m["task"] == "tiny_mc"
    rows = read_samples(out, "b")
    assert len(rows) == 4 and [r["acc"] for r in rows] == [1.0, 0.0, 1.0, 1.0]


def test_unknown_task_and_missing_include(tmp_path, task_dir, picks_b):
    ctx = context(tmp_path, [model_art(picks_b, label="b")])
    with pytest.raises(ConfigError, match="did you mean 'tiny_mc'"):
        LMEval({"tasks": ["tiny_mx"], "include_path": [str(task_dir)], "include_defaults": False}).evaluate(ctx)
    with pytest.raises(ConfigError, match="does not exist"):
        LMEval({"tasks": ["tiny_mc"], "include_path": [str(tmp_path / "nope")]}).evaluate(ctx)
