"""KTO data from the student's own answers: label each desirable/undesirable, then balance by trl's rule
(desirable_weight * n_desirable) / (undesirable_weight * n_undesirable) in [1, 4/3]."""

from __future__ import annotations

import math
import random
from typing import Any


def best_counts(nd: int, nu: int, wd: float = 1.0, wu: float = 1.0) -> tuple[int, int]:
    """The most rows (kd <= nd desirable, ku <= nu undesirable) with 1 <= wd*kd / (wu*ku) <= 4/3."""
    best = (0, 0)
    for kd in range(nd, 0, -1):
        if kd + nu <= sum(best):
            break
        lo = math.ceil(wd * kd / (wu * 4 / 3) - 1e-9)
        hi = min(nu, math.floor(wd * kd / wu + 1e-9))
        if max(lo, 1) <= hi and kd + hi > sum(best):
            best = (kd, hi)
    return best


def balance(rows: list[dict[str, Any]], desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
            seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Subsample the larger side (seeded, order kept) so the weighted ratio lies in [1, 4/3].

    The kept counts are the largest that satisfy the rule (`best_counts`): e.g. 3 desirable / 10 undesirable
    keeps 3 / 3; 10 / 3 keeps 4 / 3.
    With one side empty nothing can be balanced; the rows are returned as they are and `balanced` is False."""
    des = [i for i, r in enumerate(rows) if r["label"]]
    und = [i for i, r in enumerate(rows) if not r["label"]]
    info: dict[str, Any] = {"desirable_in": len(des), "undesirable_in": len(und)}
    drop: set[int] = set()
    if des and und:
        kd, ku = best_counts(len(des), len(und), desirable_weight, undesirable_weight)
        if kd == 0:  # no counts satisfy the rule with these weights: keep everything, report unbalanced
            kd, ku = len(des), len(und)
        rng = random.Random(seed)
        drop = set(rng.sample(des, len(des) - kd)) | set(rng.sample(und, len(und) - ku))
    out = [r for i, r in enumerate(rows) if i not in drop]
    nd = sum(1 for r in out if r["label"])
    nu = len(out) - nd
    ratio = desirable_weight * nd / (undesirable_weight * nu) if nu else math.inf
    info.update(desirable=nd, undesirable=nu, dropped=len(drop), ratio=round(ratio, 4) if nu else None,
                balanced=bool(nd and nu and 1 - 1e-9 <= ratio <= 4 / 3 + 1e-9))
    return out, info
