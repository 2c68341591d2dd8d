"""The teacher's verifier (which labels training rows) and the exact-match evaluator (which scores models) agree
on one shared table of responses, crash cases included, because both read answers through plinth.lm.answers."""

from __future__ import annotations

import pytest

from plinth.testing import make_context
from plinth_evals.exact_match import ExactMatch, Prepared
from plinth_evals.results import ModelRef
from plinth_teacher.items import Item
from plinth_teacher.verify import verify

BIG = "9" * 400

# (model response in GSM8K form, reference, correct) — `correct` written by hand from the rules
TABLE = [
    ("6 * 7 = 42\n#### 42", "42", True),
    ("#### 1,234", "1234", True),
    ("#### $1,234.00", "1,234", True),
    ("#### 4,5", "45", False),           # old readers: 45 == 45
    ("#### 10 - 5", "5", True),          # the last number of the line
    ("#### 10 - 5", "-5", False),        # old evaluator: -5 == -5
    ("#### 0.5", "0.50", True),
    ("#### 10000005", "10000000", False),
    ("#### NaN", "NaN", True),           # old readers raised ValueError here (a whole teacher stage died)
    ("#### infinity", "7", False),       # old: OverflowError
    (f"#### {BIG}", BIG, True),          # old: OverflowError
    (f"#### {BIG}", BIG[:-1] + "8", False),
    ("#### Paris", "paris", True),
    ("The answer is 12.", "12", True),
    ("so the answer is -3", "-3", True),
]


class CannedModel:
    """An EvalModel stand-in whose generation is the table's responses, in order."""

    def __init__(self, outputs):
        self.outputs = outputs

    def generate(self, prompts, **_kw):
        assert len(prompts) == len(self.outputs)
        return [[o] for o in self.outputs]


def evaluator_verdicts(tmp_path) -> list[bool]:
    items = [{"id": i, "question": f"q{i}", "reference": ref, "entry": None} for i, (_, ref, _) in enumerate(TABLE)]
    prepared = Prepared(task="t", items=items)
    _metrics, samples = ExactMatch({"task_file": "unused.jsonl"}).evaluate_model(
        CannedModel([resp for resp, _, _ in TABLE]), prepared, ModelRef("m", tmp_path), make_context(tmp_path))
    return [s["correct"] for s in samples]


def teacher_verdicts() -> list[bool]:
    return [verify(Item(id=str(i), prompt="q", source="file", group="t", reference=ref, verifier="match"), resp)
            for i, (resp, ref, _) in enumerate(TABLE)]


def test_teacher_verifier_matches_hand_written_verdicts():
    assert teacher_verdicts() == [want for _, _, want in TABLE]


def test_evaluator_matches_hand_written_verdicts(tmp_path):
    assert evaluator_verdicts(tmp_path) == [want for _, _, want in TABLE]


@pytest.mark.parametrize("response", ["#### NaN", "#### inf", f"#### {BIG}", "Answer: -infinity", BIG])
def test_crash_cases_do_not_raise_in_agreement(response):
    from plinth_teacher.answers import agreement

    best, share, _ = agreement([response, response])
    assert best is not None and share == 1.0
