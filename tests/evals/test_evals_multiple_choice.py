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
    assert row["correct_norm"] is True and metrics["t/accuracy_norm"]["sample_field"] == "correct_norm"


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


@pytest.fixture(scope="module")
def picks_3(tmp_path_factory):
    """Always prefers option label '3' after 'Answer:'."""
    from .bigram import bigram_lm

    return bigram_lm(tmp_path_factory.mktemp("m3") / "model", {":": " ", " ": "3", "\n": "3"})


ARC = [  # ARC's layout: options with their own labels "1".."4" and a 1-based answerKey that IS a label
    {"id": "a", "question": "Which is a gas?", "choices": {"text": ["rock", "iron", "steam", "wood"],
                                                          "label": ["1", "2", "3", "4"]}, "answerKey": "3"},
    {"id": "b", "question": "Which is warm?", "choices": {"text": ["ice", "snow", "sun", "hail"],
                                                         "label": ["1", "2", "3", "4"]}, "answerKey": "3"},
    {"id": "c", "question": "Which is blue?", "choices": {"text": ["sky", "sand", "coal", "milk"],
                                                         "label": ["1", "2", "3", "4"]}, "answerKey": "1"},
    {"id": "d", "question": "Which melts?", "choices": {"text": ["wax", "glass", "ice", "ash"],
                                                       "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
]


def test_arc_labels_one_based_keys(tmp_path, picks_3):
    """Key "3" with labels "1".."4" is the third option (old code read it as 0-based index 3, the fourth)."""
    task = write_jsonl(tmp_path / "arc.jsonl", ARC)
    out = MultipleChoice({"task_file": str(task)}).evaluate(context(tmp_path, [model_art(picks_3, label="m")]))
    rows = read_samples(out, "m")
    assert [r["answer"] for r in rows] == ["3", "3", "1", "C"]
    assert [r["predicted"] for r in rows][:3] == ["3", "3", "3"]
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert "1. rock\n2. iron\n3. steam\n4. wood\nAnswer:" in MultipleChoice({"task_file": str(task)}).context(
        None, MultipleChoice({"task_file": str(task)}).prepare(None).items[0], [])
    assert read_metrics(out)["models"]["m"]["metrics"]["arc/accuracy"]["value"] == 0.5


def test_answer_key_rules():
    from plinth_evals.multiple_choice import answer_index

    opts, letters, digits = ["w", "x", "y", "z"], ["A", "B", "C", "D"], ["1", "2", "3", "4"]
    assert answer_index("3", opts, digits) == 2          # a label wins over an index
    assert answer_index(3, opts, digits) == 2            # also as a JSON number
    assert answer_index("4", opts, digits) == 3
    assert answer_index("c", opts, letters) == 2         # labels are case-insensitive
    assert answer_index(3, opts, letters) == 3           # not a label: a 0-based index
    assert answer_index("1", opts, letters, base=1) == 0  # 1-based when configured
    assert answer_index(4, opts, letters, base=1) == 3
    assert answer_index(4, opts, letters) is None and answer_index(0, opts, letters, base=1) is None
    assert answer_index("y", opts, letters) == 2         # then the option text
    assert answer_index(True, opts, letters) is None and answer_index("E", opts, letters) is None


def test_one_based_keys_with_letter_labels(tmp_path, picks_b):
    rows = [{"question": "2 + 2 = ?", "choices": ["3", "4", "5", "6"], "answer": 2},
            {"question": "1 + 1 = ?", "choices": ["2", "3", "4", "5"], "answer": "1"}]
    task = write_jsonl(tmp_path / "one.jsonl", rows)
    out = MultipleChoice({"task_file": str(task), "answer_index_base": 1}).evaluate(
        context(tmp_path, [model_art(picks_b, label="b")]))
    assert [r["answer"] for r in read_samples(out, "b")] == ["B", "A"]


def test_arc_layout_errors(tmp_path, picks_b):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "choices": {"text": ["a", "b"], "label": ["1"]},
                                                 "answerKey": "1"}])
    with pytest.raises(ConfigError, match=r"bad\.jsonl, line 1: field 'choices' as an object needs lists"):
        MultipleChoice({"task_file": str(bad)}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"question": "q", "choices": {"text": ["a", "b"], "label": ["1", "1"]},
                                                 "answerKey": "1"}])
    with pytest.raises(ConfigError, match="must be distinct"):
        MultipleChoice({"task_file": str(dup)}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
    many = write_jsonl(tmp_path / "many.jsonl", [{"question": "q", "choices": list("abcdefghijk"), "answer": "A"}])
    with pytest.raises(ConfigError, match="11 options; at most 10"):
        MultipleChoice({"task_file": str(many)}).evaluate(context(tmp_path, [model_art(picks_b, label="b")]))
