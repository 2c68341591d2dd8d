"""plinth.lm.answers: numbers in free text and whole answers, against hand-written expected values (crash cases
included: NaN, infinity, numbers past float range), and matching rules."""

from __future__ import annotations

import pytest

from plinth.lm.answers import answers_match, hashes_answer, last_number, normalize, number_value, numbers

BIG = "9" * 400  # float("9" * 400) is inf: the old normalisers raised OverflowError on it


@pytest.mark.parametrize("text, want", [
    ("10 - 5", ["10", "5"]),            # a spaced minus is an operator, not the sign of 5
    ("10-5", ["10", "5"]),              # so is a minus right after a number
    ("x-5 and (-5) and = -5", ["5", "-5", "-5"]),
    ("4,5", ["4", "5"]),                # not 45: commas separate thousands only in groups of three
    ("1,234", ["1234"]),
    ("1,234,567.25", ["1234567.25"]),
    ("1,2345", ["1", "2345"]),
    ("$1,234.00 and -$7", ["1234", "-7"]),
    (".5 then 3.", ["0.5", "3"]),
    ("\u22123 degrees", ["-3"]),          # the Unicode minus sign
    ("-0.0", ["0"]),
    ("NaN, inf, infinity", []),
    ("no digits", []),
])
def test_numbers_in_text(text, want):
    assert numbers(text) == want


def test_numbers_past_float_range_are_exact():
    assert numbers(f"it is {BIG}.") == [BIG]
    assert last_number(f"{BIG}1 or -{BIG}") == "-" + BIG


@pytest.mark.parametrize("answer, want", [
    ("1,234.0", "1234"),
    ("$5.", "5"),
    ("12 apples", "12"),
    ("50%", "50"),
    ("**42**", "42"),
    ("-0.50", "-0.5"),
    ("+7", "7"),
    (" Paris. ", "paris"),
    ("NaN", "nan"),                     # crashed with ValueError (int(nan))
    ("infinity", "infinity"),           # crashed with OverflowError (int(inf))
    ("-inf", "-inf"),
    (BIG, BIG),                         # crashed with OverflowError
    ("4,5", "4,5"),                     # text, not 45
    ("10 - 5", "10 - 5"),               # text, not -5
    ("1e5", "1e5"),                     # scientific notation is text
    (None, None),
])
def test_normalize(answer, want):
    assert normalize(answer) == want


def test_normalize_text_only_and_case():
    assert normalize("1,000", numeric=False) == "1,000"
    assert normalize("Paris", case_sensitive=True) == "Paris"


@pytest.mark.parametrize("a, b, want", [
    ("0.50", "0.5", True),
    ("1,000", "1000", True),
    ("0.30000000000000004", "0.3", True),   # float round-off in a written answer
    ("0.3001", "0.3", False),
    ("10000005", "10000000", False),        # integers are exact, not within 1e-6 relative
    (BIG, BIG[:-1] + "8", False),           # exact at any size
    (BIG, BIG, True),
    ("NaN", "nan", True),                   # text comparison, no crash
    ("infinity", "inf", False),
    ("4,5", "45", False),
    ("10 - 5", "-5", False),
    ("Paris.", "paris", True),
    ("3", None, False),
])
def test_answers_match(a, b, want):
    assert answers_match(a, b) is want


def test_match_text_mode_and_case():
    assert not answers_match("1.0", "1", numeric=False)
    assert answers_match("1.0", "1")
    assert not answers_match("Paris", "paris", case_sensitive=True)


def test_number_value_is_exact_decimal():
    assert str(number_value("1,234.50")) == "1234.50"
    assert number_value("twelve") is None and number_value("") is None and number_value(None) is None


@pytest.mark.parametrize("text, want", [
    ("3 * 4 = 12\n#### 12", "12"),
    ("#### 10 - 5", "5"),               # the last number on the line
    ("#### 4,5", "5"),
    ("#### $1,234", "1234"),
    ("#### Paris", "Paris"),
    ("####   \nmore", None),
    ("no final line", None),
])
def test_hashes_answer(text, want):
    assert hashes_answer(text) == want
