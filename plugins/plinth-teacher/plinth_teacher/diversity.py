"""Diversity metrics of a set of prompts, reported before and after construction.

- distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over the set (higher = more varied);
- mean pairwise similarity: mean Jaccard of word-trigram sets over all pairs, or over a fixed random sample of
  pairs for large sets (lower = more varied);
- coverage: items per task/topic, and how many of them there are.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Sequence

from .dedup import jaccard, shingles, tokens


def distinct_n(texts: Sequence[str], n: int) -> float:
    total, unique = 0, set()
    for t in texts:
        toks = tokens(t)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def mean_pairwise_similarity(texts: Sequence[str], max_pairs: int = 20000, seed: int = 0) -> float:
    n = len(texts)
    if n < 2:
        return 0.0
    sets = [shingles(t, 3) for t in texts]
    all_pairs = n * (n - 1) // 2
    if all_pairs <= max_pairs:
        pairs = ((i, j) for i in range(n) for j in range(i + 1, n))
        count = all_pairs
    else:
        rng = random.Random(seed)
        pairs = []
        while len(pairs) < max_pairs:
            i, j = rng.randrange(n), rng.randrange(n)
            if i != j:
                pairs.append((i, j))
        count = max_pairs
    return sum(jaccard(sets[i], sets[j]) for i, j in pairs) / count


def diversity_report(texts: Sequence[str], groups: Sequence[str] | None = None) -> dict[str, Any]:
    """The metrics above for one set; `groups` gives each text's task or topic for coverage."""
    report: dict[str, Any] = {
        "count": len(texts),
        "distinct_1": round(distinct_n(texts, 1), 4),
        "distinct_2": round(distinct_n(texts, 2), 4),
        "mean_pairwise_similarity": round(mean_pairwise_similarity(texts), 4),
    }
    if groups is not None:
        counts = Counter(groups)
        report["coverage"] = dict(sorted(counts.items()))
        report["groups_covered"] = len(counts)
    return report
