"""exact-match on models whose answers are known exactly: scores, samples, few-shot, chat, bad input."""

from __future__ import annotations

import json

import pytest

from plinth import ConfigError
from plinth.stats import wilson_interval
from plinth_evals.exact_match import ExactMatch

from .conftest import context, model_art, read_metrics, read_samples, write_jsonl

GSM = [
    {"question": "Tom has 40 apples and buys 2. How many?", "answer": "40 + 2 = 42\n#### 42"},
    {"question": "What is 6 * 7?", "answer": "#### 42"},
    {"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"},
    {"question": "How many days in a week?", "answer": "#### 7"},
    {"question": "Answer forty-two", "answer": "#### 42"},
]


def test_known_answer_scores_and_schema(tmp_path, answer42, answer4):
    task = write_jsonl(tmp_path / "gsm.jsonl", GSM)
    ctx = context(tmp_path, [model_art(answer42, stage="sft")], baseline=model_art(answer4, label="base"))
    out = ExactMatch({"task_file": str(task), "max_new_tokens": 6, "batch_size": 2}).evaluate(ctx)
    doc = read_metrics(out)
    assert doc["schema"] == "plinth.metrics/v1" and doc["evaluator"] == "exact-match" and doc["task"] == "gsm"
    assert doc["baseline"] == "base"
    assert list(doc["models"]) == ["base", "sft"]
    m = doc["models"]["sft"]["metrics"]["gsm/exact_match"]
    assert m["value"] == pytest.approx(3 / 5) and m["n"] == 5
    assert (m["ci_low"], m["ci_high"]) == pytest.approx(wilson_interval(3, 5))
    assert m["ci_method"] == "wilson" and m["unparsed"] == 0
    assert doc["models"]["base"]["metrics"]["gsm/exact_match"]["value"] == 0.0
    rows = read_samples(out, "sft")
    assert [r["correct"] for r in rows] == [True, True, False, False, True]
    assert rows[0]["output"].strip() == "42" and rows[0]["extracted"] == "42" and rows[0]["reference"] == "42"
    # metrics were also logged to the run's metrics.jsonl
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("sft/gsm/exact_match") == pytest.approx(0.6) for r in logged)


def test_unparsable_answers_are_wrong_and_counted(tmp_path, answer_x):
    task = write_jsonl(tmp_path / "t.jsonl", GSM[:3])
    out = ExactMatch({"task_file": str(task), "max_new_tokens": 4}).evaluate(
        context(tmp_path, [model_art(answer_x, label="x")]))
    m = read_metrics(out)["models"]["x"]["metrics"]["t/exact_match"]
    assert m["value"] == 0.0 and m["unparsed"] == 3
    assert all(r["parsed"] is False and r["extracted"] is None for r in read_samples(out, "x"))


def test_few_shot_and_chat_template_prompts(tmp_path, answer42):
    task = write_jsonl(tmp_path / "t.jsonl", GSM)
    ctx = context(tmp_path, [model_art(answer42, label="m")])
    out = ExactMatch({"task_file": str(task), "few_shot": 2, "chat_template": True, "system_prompt": "Be brief.",
                      "max_new_tokens": 4}).evaluate(ctx)
    rows = read_samples(out, "m")
    assert len(rows) == 3  # the two examples are not evaluated
    prompt = rows[0]["prompt"]
    assert prompt.startswith("<|im_start|>system\nBe brief.") and prompt.count("<|im_start|>assistant") == 3
    assert "#### 42" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert [r["correct"] for r in rows] == [False, False, True]


def test_batched_equals_one_at_a_time(tmp_path, answer42):
    task = write_jsonl(tmp_path / "t.jsonl", GSM)
    outs = []
    for bs in (1, 5):
        ctx = context(tmp_path / f"b{bs}", [model_art(answer42, label="m")])
        out = ExactMatch({"task_file": str(task), "batch_size": bs, "max_new_tokens": 5}).evaluate(ctx)
        outs.append([r["output"] for r in read_samples(out, "m")])
    assert outs[0] == outs[1]


def test_reasoning_gym_scorer(tmp_path, answer42):
    ctx = context(tmp_path, [model_art(answer42, label="m")])
    out = ExactMatch({"reasoning_gym": "basic_arithmetic", "reasoning_gym_size": 4, "max_new_tokens": 4}
                     ).evaluate(ctx)
    rows = read_samples(out, "m")
    m = read_metrics(out)["models"]["m"]["metrics"]["basic_arithmetic/exact_match"]
    assert m["n"] == 4
    assert m["value"] == sum(r["reference"] == "42" for r in rows) / 4


def test_bad_task_file_fails_before_loading_models(tmp_path):
    broken_model = tmp_path / "not-a-model"
    broken_model.mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{"question": oops}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl, line 2: not valid JSON"):
        ExactMatch({"task_file": str(bad)}).evaluate(context(tmp_path, [model_art(broken_model, label="m")]))
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"question": "q", "answer": "1"}, {"question": "q2"}])
    with pytest.raises(ConfigError, match=r"missing\.jsonl, line 2: missing field 'answer'"):
        ExactMatch({"task_file": str(missing)}).evaluate(context(tmp_path, [model_art(broken_model, label="m")]))
    with pytest.raises(ConfigError, match="does not exist"):
        ExactMatch({"task_file": str(tmp_path / "nope.jsonl")}).evaluate(
            context(tmp_path, [model_art(broken_model, label="m")]))
    assert not (tmp_path / "stages" / "eval" / "out" / "metrics.json").exists()


def test_model_folder_that_does_not_load(tmp_path):
    broken_model = tmp_path / "broken"
    broken_model.mkdir()
    (broken_model / "config.json").write_text("{not json")
    task = write_jsonl(tmp_path / "t.jsonl", GSM[:1])
    with pytest.raises(ConfigError, match="does not load"):
        ExactMatch({"task_file": str(task)}).evaluate(context(tmp_path, [model_art(broken_model, label="m")]))


def test_task_from_an_earlier_stage(tmp_path, answer42):
    """The teacher's held-out `eval` set (prompt/answer rows) wired as the `task` input."""
    from plinth import Artifact

    rows = [{"prompt": "What is 6 * 7?", "answer": "42"}, {"prompt": "What is 2 + 2?", "answer": "4"}]
    task = Artifact("dataset", write_jsonl(tmp_path / "eval.jsonl", rows), {"stage": "data", "output": "eval"})
    ctx = context(tmp_path, [model_art(answer42, label="m")])
    ctx.inputs["task"] = task
    out = ExactMatch({"max_new_tokens": 4}).evaluate(ctx)
    m = read_metrics(out)["models"]["m"]["metrics"]["eval/exact_match"]
    assert m["value"] == pytest.approx(0.5) and m["n"] == 2
    with pytest.raises(ConfigError, match="both `task_file` and a `task` input"):
        ExactMatch({"task_file": "x.jsonl"}).evaluate(ctx)


def test_config_errors(tmp_path, answer42):
    with pytest.raises(ValueError, match="not both"):
        ExactMatch({"task_file": "x.jsonl", "reasoning_gym": "basic_arithmetic"})
    with pytest.raises(ConfigError, match="nothing to evaluate on"):
        ExactMatch({}).evaluate(context(tmp_path, [model_art(answer42, label="m")]))
    with pytest.raises(ValueError, match="not a valid regular expression"):
        ExactMatch({"task_file": "x.jsonl", "extract": "regex", "regex": "(unclosed"})
    with pytest.raises(ValueError, match="extra"):
        ExactMatch({"task_file": "x.jsonl", "tempreature": 0.1})
