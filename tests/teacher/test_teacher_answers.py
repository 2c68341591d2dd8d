"""Answer extraction, normalisation, self-consistency agreement and tolerant JSON parsing: known answers."""

import pytest

from plinth_teacher.answers import agreement, answers_match, extract_answer, normalize, parse_json, parse_score


@pytest.mark.parametrize("text, want", [
    ("step 1...\nAnswer: 42", "42"),
    ("blah\n#### 1,234", "1234"),
    ("so \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),  # nested braces
    ("#### 10 - 5", "5"),
    ("so \\boxed{7} is it", "7"),
    ("The final answer is 3.", "3."),
    ("I think 5 then 9", "9"),
    ("no numbers here\nParis", "Paris"),
    ("", None),
])
def test_extract_answer(text, want):
    assert extract_answer(text) == want


def test_normalize_numbers_and_text():
    assert normalize("1,234.0") == "1234"
    assert normalize("$5.") == "5"
    assert normalize("12 apples") == "12"
    assert normalize(" Paris. ") == "paris"
    assert answers_match("0.50", "0.5") and not answers_match("3", "4")


def test_agreement_counts_unparseable_against():
    samples = ["Answer: 4", "Answer: 4.0", "Answer: 5", ""]
    best, share, idx = agreement(samples)
    assert best == "4" and share == pytest.approx(0.5) and idx == 0
    assert agreement(["", "  "]) == (None, 0.0, -1)
    # ties go to the answer seen first
    assert agreement(["Answer: 1", "Answer: 2"])[0] == "1"


@pytest.mark.parametrize("text", [
    '{"score": 8}',
    'Sure! ```json\n{"score": 8, "reason": "ok",}\n```',
    "Here you go: {'score': 8}",
    'prefix {"score": 8} suffix',
])
def test_parse_json_tolerant(text):
    assert parse_json(text)["score"] == 8


def test_parse_json_garbage_raises():
    with pytest.raises(ValueError):
        parse_json("<html>502</html>")


def test_parse_score_fallbacks_and_range():
    assert parse_score('{"score": 9}') == 9
    assert parse_score("Score: 6/10") == 6
    assert parse_score("7") == 7
    assert parse_score('{"score": 55}') is None
    assert parse_score("no idea") is None
    # siblings of the normaliser crashes: no OverflowError, NaN and negative scores are out of range
    assert parse_score('{"score": ' + "9" * 400 + "}") is None
    assert parse_score('{"score": "NaN"}') is None and parse_score('{"score": "inf"}') is None
    assert parse_score("Score: -3") is None and parse_score("-8/10") is None
