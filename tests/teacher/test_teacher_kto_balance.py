"""KTO balancing by trl's rule: desirable_weight*nD / (undesirable_weight*nU) in [1, 4/3]."""

import pytest

from plinth_teacher.kto import balance, best_counts


@pytest.mark.parametrize("nd, nu, wd, wu, want", [
    (3, 10, 1, 1, (3, 3)),
    (10, 3, 1, 1, (4, 3)),
    (5, 5, 1, 1, (5, 5)),
    (7, 6, 1, 1, (7, 6)),      # 1.167 already in range
    (3, 5, 1, 2, (2, 1)),      # 3/(2u) must be in [1, 4/3]: no u for 3 desirables, so 2 and 1
    (4, 10, 2, 1, (4, 8)),     # weighted 8 desirable: keep 8 undesirable (ratio 1), the most rows
])
def test_best_counts(nd, nu, wd, wu, want):
    kd, ku = best_counts(nd, nu, wd, wu)
    assert (kd, ku) == want
    assert 1 <= wd * kd / (wu * ku) <= 4 / 3 + 1e-9


def test_balance_rows_keeps_order_and_reports():
    rows = [{"id": i, "label": i % 4 == 0} for i in range(20)]  # 5 desirable, 15 undesirable
    out, info = balance(rows, seed=1)
    assert info["desirable"] == 5 and info["undesirable"] == 5 and info["balanced"] and info["dropped"] == 10
    ids = [r["id"] for r in out]
    assert ids == sorted(ids)
    assert all(r["label"] for r in out if r["id"] % 4 == 0) and sum(r["label"] for r in out) == 5
    assert balance(rows, seed=1)[0] == out  # seeded


def test_balance_one_sided_is_reported_not_hidden():
    rows = [{"label": True}] * 4
    out, info = balance(rows)
    assert out == rows and info["balanced"] is False and info["ratio"] is None
