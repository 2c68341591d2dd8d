"""Interval maths (plinth.stats) and answer extraction: known values, brute-force checks, edge cases."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from plinth.stats import (
    bootstrap_interval,
    difference_interval,
    mean_interval,
    pass_at_k,
    wilson_interval,
    z_value,
)
from plinth_evals import extract


def test_wilson_known_values():
    assert z_value() == pytest.approx(1.959964, abs=1e-6)
    # reference values: scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    assert wilson_interval(81, 263) == pytest.approx((0.255289, 0.366210), abs=1e-6)
    assert wilson_interval(3, 5) == pytest.approx((0.230724, 0.882379), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_wilson_coverage_is_near_95_percent():
    rng = random.Random(1)
    p, n, hits, trials = 0.3, 40, 0, 2000
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson_interval(k, n)
        hits += lo <= p <= hi
    assert 0.92 <= hits / trials <= 0.98


def test_bootstrap_and_mean_intervals():
    values = [0.0, 1.0] * 50
    lo, hi = bootstrap_interval(values)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(2 * 1.96 * 0.05, rel=0.15)
    assert bootstrap_interval(values) == bootstrap_interval(values)  # deterministic
    assert bootstrap_interval([3.0] * 5) == (3.0, 3.0)
    m_lo, m_hi = mean_interval(values)
    assert (m_lo + m_hi) / 2 == pytest.approx(0.5) and m_hi - m_lo == pytest.approx(2 * 1.96 * 0.5025 / 10, rel=1e-3)
    assert math.isnan(bootstrap_interval([])[0])


def test_pass_at_k_matches_brute_force():
    for n, c, k in [(5, 2, 1), (5, 2, 2), (6, 1, 3), (4, 0, 2), (4, 4, 4), (10, 3, 5)]:
        draws = list(itertools.combinations([True] * c + [False] * (n - c), k))
        brute = sum(any(d) for d in draws) / len(draws)
        assert pass_at_k(n, c, k) == pytest.approx(brute), (n, c, k)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_difference_interval():
    lo, hi = difference_interval(0.6, (0.5, 0.7), 0.4, (0.3, 0.5))
    assert lo < 0.2 < hi and hi - lo == pytest.approx(2 * math.sqrt(2) * 0.1)


@pytest.mark.parametrize("text,expected", [
    ("She pays 3 * 4 = 12 dollars.\n#### 12", "12"),
    ("#### $1,234.00", "1234"),
    ("so the answer is 56.", "56"),
    ("first 3 then 17", "17"),
    ("no digits here", None),
    ("#### Paris", "Paris"),  # the committed line, as the teacher reads it
    ("the answer is 10 - 5", "10"),
    ("#### NaN", "NaN"),
])
def test_gsm8k_extraction(text, expected):
    assert extract.gsm8k(text) == expected


def test_other_extractors():
    assert extract.boxed(r"thus \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract.boxed("no box") is None
    assert extract.boxed(r"\boxed{unclosed") is None
    assert extract.EXTRACTORS["last-number"]("-3.50 and 2.0") == "2"
    assert extract.make_regex(r"ANSWER: (\w+)")("x ANSWER: foo y ANSWER: bar") == "bar"
