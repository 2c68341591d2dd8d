"""Interval maths for scores: every number plinth reports carries its sample count and a 95% interval.

Pure Python (no numpy), so any plugin and the report can use it without heavy imports.

- `wilson_interval(k, n)`: a proportion (accuracy, pass rate) — good near 0 and 1 and for small n, where the
  normal "Wald" interval collapses to zero width.
- `bootstrap_interval(values)`: any mean of per-sample values (win rate with ties as 0.5, log-likelihoods);
  percentile bootstrap with a fixed seed so the same samples always give the same interval.
- `mean_interval(values)`: normal approximation for a mean (cheap; used for large n).
- `pass_at_k(n, c, k)`: the unbiased pass@k estimator of Chen et al. (2021), HumanEval.
- `paired_bootstrap_interval(a, b)`: mean(a) - mean(b) for two models scored on the same items (a[i], b[i] of
  item i), resampling items; much narrower than `difference_interval` when the models agree on most items.
- `difference_interval(...)`: a - b for independent estimates, from their intervals (the unpaired fallback).
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Callable, Sequence

CONFIDENCE = 0.95


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal quantile: 1.95996... for 95%."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n; (0.0, 1.0) when n == 0 (nothing is known)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = z_value(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] | None = None,
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (default: the mean) over `values`; deterministic by `seed`."""
    values = list(values)
    if not values:
        return (float("nan"), float("nan"))
    stat = statistic or (lambda xs: sum(xs) / len(xs))
    rng = random.Random(seed)
    n = len(values)
    draws = sorted(stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(n_resamples))
    alpha = (1.0 - confidence) / 2.0
    return (_percentile(draws, alpha), _percentile(draws, 1.0 - alpha))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Normal-approximation interval of the mean (sample standard deviation); a point when n < 2."""
    values = list(values)
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    m = sum(values) / n
    if n < 2:
        return (m, m)
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    half = z_value(confidence) * math.sqrt(var / n)
    return (m - half, m + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples (drawn from n, of which c pass) passes: 1 - C(n-c,k)/C(n,k)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def difference_interval(
    a: float, a_ci: tuple[float, float], b: float, b_ci: tuple[float, float], confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Approximate interval of a - b for independent estimates, from each one's interval (half-width / z as its
    standard error). Used for "delta to baseline" columns; it is conservative for paired samples."""
    z = z_value(confidence)
    se_a = (a_ci[1] - a_ci[0]) / (2 * z)
    se_b = (b_ci[1] - b_ci[0]) / (2 * z)
    half = z * math.sqrt(se_a * se_a + se_b * se_b)
    d = a - b
    return (d - half, d + half)


def paired_bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b) where a[i] and b[i] are two models' scores on item i.

    Items are resampled, keeping each item's pair together, so what both models get right or wrong cancels;
    deterministic by `seed`. Raises ValueError when the lists differ in length; (nan, nan) for none."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need one value per item for both models, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    if not diffs:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(diffs)
    draws = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(n_resamples))
    alpha = (1.0 - confidence) / 2.0
    return (_percentile(draws, alpha), _percentile(draws, 1.0 - alpha))
