"""plinth.stats.paired_bootstrap_interval against independent computations: a numpy percentile bootstrap over
items, the normal approximation of the mean difference, exact constant-difference cases, and a case where pairing
must give a much narrower interval than the unpaired one."""

from __future__ import annotations

import math
import random

import pytest

from plinth.stats import difference_interval, paired_bootstrap_interval, wilson_interval


def two_models(n=400, flips=20, seed=0):
    """b right on ~half the items; a equals b except on `flips` items b got wrong and a got right."""
    rng = random.Random(seed)
    b = [1.0 if rng.random() < 0.5 else 0.0 for _ in range(n)]
    a = list(b)
    wrong = [i for i, v in enumerate(b) if v == 0.0]
    for i in rng.sample(wrong, flips):
        a[i] = 1.0
    return a, b


def test_against_numpy_percentile_bootstrap():
    import numpy as np
    a, b = two_models()
    d = np.array(a) - np.array(b)
    rng = np.random.default_rng(123)
    means = d[rng.integers(0, len(d), size=(20000, len(d)))].mean(axis=1)
    ref_lo, ref_hi = np.percentile(means, [2.5, 97.5])
    lo, hi = paired_bootstrap_interval(a, b)
    assert lo == pytest.approx(ref_lo, abs=0.004) and hi == pytest.approx(ref_hi, abs=0.004)


def test_against_normal_approximation_of_the_mean_difference():
    rng = random.Random(5)
    a = [rng.gauss(0.6, 0.2) for _ in range(1000)]
    b = [x - 0.05 + rng.gauss(0, 0.05) for x in a]
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((v - m) ** 2 for v in d) / (len(d) - 1))
    half = 1.959964 * sd / math.sqrt(len(d))
    lo, hi = paired_bootstrap_interval(a, b)
    assert lo == pytest.approx(m - half, abs=0.15 * half) and hi == pytest.approx(m + half, abs=0.15 * half)


def test_paired_is_much_narrower_than_unpaired_when_models_agree_on_most_items():
    a, b = two_models(n=400, flips=20)
    ka, kb = sum(a), sum(b)
    un_lo, un_hi = difference_interval(ka / 400, wilson_interval(ka, 400), kb / 400, wilson_interval(kb, 400))
    lo, hi = paired_bootstrap_interval(a, b)
    assert un_lo < 0 < un_hi  # unpaired: +0.05 is not distinguishable from 0
    assert lo > 0  # paired: 20 items improved, none got worse — clearly above 0
    assert (hi - lo) < 0.5 * (un_hi - un_lo)


def test_exact_cases_and_errors():
    assert paired_bootstrap_interval([1.0, 0.0, 1.0], [1.0, 0.0, 1.0]) == (0.0, 0.0)
    assert paired_bootstrap_interval([3.0, 5.0, 9.0], [1.0, 3.0, 7.0]) == (2.0, 2.0)
    assert paired_bootstrap_interval([0.2, 0.9], [0.1, 0.3], seed=4) == paired_bootstrap_interval(
        [0.2, 0.9], [0.1, 0.3], seed=4)
    assert all(math.isnan(x) for x in paired_bootstrap_interval([], []))
    with pytest.raises(ValueError, match="one value per item"):
        paired_bootstrap_interval([1.0], [1.0, 0.0])
