"""multiple-choice on a model that always prefers option B, in the MMLU / C-Eval / CMMLU file layouts."""

from __future__ import annotations

import pytest

from plinth import ConfigError
from plinth_evals.multiple_choice import MultipleChoice

from .conftest import context, model_art, read_metrics, read_samples, write_jsonl

QUESTIONS = [
    {"question": "2 + 2 = ?", "choices": ["3", "4", "5", "6"], "answer": "B"},
    {"question": "Capital of France?", "choices": ["Rome", "Paris", "Oslo", "Bern"], "answer": 1},
    {"question": "Red + blue?", "choices": ["Purple", "Green", "Brown", "Black"], "answer": "A"},
    {"question": "Largest planet?", "choices": ["Mars", "Venus", "Jupiter", "Earth"], "answer": "Jupiter"},
]


def test_jsonl_letter_scoring(tmp_path, picks_b):
    task = write_jsonl(tmp_path / "mmlu_tiny.jsonl", QUESTIONS)
    out = MultipleChoice({"task_file": str(task), "subject": "general knowledge"}).evaluate(
        context(tmp_path, [model_art(picks_b, label="b")]))
    m = read_metrics(out)["models"]["b"]["metrics"]["mmlu_tiny/accuracy"]
    assert m["value"] == 0.5 and m["n"] == 4 and m["ci_method"] == "wilson"
    rows = read_samples(out, "b")
    assert [r["predicted"] for r in rows] == ["B"] * 4
    assert [r["answer"] for r in rows] == ["B", "B", "A", "C"]
    assert all(len(r["loglikelihoods"]) == 4 for r in rows)


def test_csv_layouts_and_few_shot(tmp_path, picks_b):
    # MMLU: no header, question,A,B,C,D,answer
    mmlu = tmp_path / "mmlu.csv"
    mmlu.write_text('"2 + 2 = ?",3,4,5,6,B\n"1 + 1 = ?",2,3,4,5,A\n"3 + 3 = ?",5,6,7,8,B\n')
    # C-Eval: header with id and explanation
    ceval = tmp_path / "ceval.csv"
    ceval.write_text("id,question,A,B,C,D,answer,explanation\n0,一加一,1,2,3,4,B,\n1,二加二,4,5,6,7,A,\n")
    # CMMLU: unnamed first column, capitalised names
    cmmlu = tmp_path / "cmmlu.csv"
    cmmlu.write_text(",Question,A,B,C,D,Answer\n0,问题,甲,乙,丙,丁,B\n")
    for path, expected, n in [(mmlu, 2 / 3, 3), (ceval, 0.5, 2), (cmmlu, 1.0, 1)]:
        out = MultipleChoice({"task_file": str(path)}).evaluate(
            context(tmp_path / path.stem, [model_art(picks_b, label="b")]))
        m = read_metrics(out)["models"]["b"]["metrics"][f"{path.stem}/accuracy"]
        assert (m["value"], m["n"]) == (pytest.approx(expected), n), path.name
    out = MultipleChoice({"task_file": str(mmlu), "few_shot": 1, "chat_template": True}).evaluate(
        context(tmp_path / "fs", [model_art(picks_b, label="b")]))
    rows = read_samples(out, "b")
    assert len(rows) == 2 and rows[0]["question"] == "1 + 1 = ?"


def test_text_scoring_reports_length_normalised_accuracy(tmp_path, picks_b):
    # option texts are scored: " B" is what the model wants after "Answer:"; " BB" adds an improbable token
    task = write_jsonl(tmp_path / "t.jsonl", [{"question": "pick", "choices": ["yes", "BB", "B"], "answer": 2}])
    out = MultipleChoice({"task_file": str(task), "score": "text"}).evaluate(
        context(tmp_path, [model_art(picks_b, label="b")]))
    metrics = read_metrics(out)["models"]["b"]["metrics"]
    assert set(metrics) == {"t/accuracy", "t/accuracy_norm"}
    assert metrics["t/accuracy"]["value"] == 1.0 and metrics["t/accuracy_norm"]["value"] == 1.0
    row = read_samples(out, "b")[0]
    assert row["predicted"] == "C" and row["loglikelihoods"][2] > row["loglikelihoods"][1] > row["loglikelihoods"][0]


def test_bad_answers_and_missing_options(tmp_path, picks_b):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "choices": ["x", "y"], "answer": "E"}])
    with pytest.raises(ConfigError, match=r"bad\.jsonl, line 1: answer 'E' is neither"):
        MultipleChoice({"task_file": str(bad)}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
    no_opts = write_jsonl(tmp_path / "noopt.jsonl", [{"question": "q", "answer": "A"}])
    with pytest.raises(ConfigError, match="no options"):
        MultipleChoice({"task_file": str(no_opts)}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
    short = tmp_path / "short.csv"
    short.write_text("question,A,B,answer\nq,1,2,A\nq2,1\n")
    with pytest.raises(ConfigError, match=r"short\.csv, row 3: 2 columns"):
        MultipleChoice({"task_file": str(short)}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
