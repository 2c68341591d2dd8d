"""Near-duplicate removal, decontamination and diversity metrics on inputs with known answers."""

import random

import pytest

from plinth_teacher.dedup import Decontaminator, deduplicate, jaccard, lsh_bands, shingles
from plinth_teacher.diversity import distinct_n, diversity_report, mean_pairwise_similarity

BASE = "please compute the total cost of three apples and two pears at the market today"


@pytest.mark.parametrize("method", ["jaccard", "minhash"])
def test_dedup_known_groups(method):
    texts = [
        BASE,
        BASE + " please",                                 # near duplicate of 0 (J = 13/14 ~ 0.93)
        "write a haiku about the autumn moon over the quiet lake",
        BASE.upper(),                                       # same shingles after lower-casing
        "write a haiku about the autumn moon over the quiet lake tonight",  # near dup of 2
        "explain how a binary search tree keeps its keys in order",
    ]
    res = deduplicate(texts, threshold=0.8, method=method, num_perm=128)
    assert res.keep == [0, 2, 5]
    assert {k: v[:2] for k, v in res.dropped.items()} == {1: ("duplicate", 0), 3: ("duplicate", 0), 4: ("duplicate", 2)}


def test_threshold_is_respected():
    a, b = BASE, BASE.replace("three", "four").replace("two", "five")
    sim = jaccard(shingles(a), shingles(b))
    assert 0.3 < sim < 0.8
    assert deduplicate([a, b], threshold=sim + 0.01, method="jaccard").keep == [0, 1]
    assert deduplicate([a, b], threshold=sim - 0.01, method="jaccard").keep == [0]


def test_against_seeds():
    seeds = [BASE]
    res = deduplicate([BASE + " now", "a totally different question about rivers"], seeds, method="jaccard")
    assert res.keep == [1] and res.dropped[0][0] == "near_seed"


def test_minhash_matches_exact_on_random_set():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    base = [" ".join(rng.choice(words) for _ in range(20)) for _ in range(150)]
    texts = base + [t.rsplit(" ", 1)[0] + " zz" for t in base[:50]]  # 50 near dups (J ~ 0.9)
    exact = deduplicate(texts, threshold=0.7, method="jaccard")
    approx = deduplicate(texts, threshold=0.7, method="minhash", num_perm=128)
    assert len(exact.keep) == 150
    # LSH never drops a pair below threshold (exact check), and finds (almost) all true pairs
    assert set(approx.keep) >= set(exact.keep)
    assert len(approx.keep) <= 152


def test_lsh_bands_shape():
    b, r = lsh_bands(64, 0.8)
    assert b * r == 64 and (1 / b) ** (1 / r) <= 0.8


def test_decontamination_ngram_jaccard_and_boilerplate():
    eval_set = ["What is the capital city of France and when was it founded by the romans"]
    d = Decontaminator(eval_set, ngram=8, threshold=0.6)
    assert d.check("Tell me: what is the capital city of France and when was it founded?") is not None
    assert d.check("What is the capital city of Spain?") is None
    assert d.check(eval_set[0]) == "exact"
    # a sentence every training prompt ends with is template text, not a leak
    tail = " Give the result as your final answer and do not include units."
    d2 = Decontaminator(["How many eggs does Ann have if she buys 3 boxes of 12?" + tail], ngram=8)
    train = [f"Bob has {i} marbles and loses {i // 2}. How many remain?{tail}" for i in range(10)]
    assert d2.check(train[0]) is not None  # alone, the shared 8-gram flags it
    assert d2.check_all(train) == [None] * 10  # across the set it is recognised as boilerplate


def test_diversity_metrics_known_values():
    assert distinct_n(["a b", "a c"], 1) == pytest.approx(3 / 4)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)
    assert mean_pairwise_similarity(["a b c d", "a b c d"]) == 1.0
    assert mean_pairwise_similarity(["a b c d", "w x y z"]) == 0.0
    rep = diversity_report(["a b c", "d e f", "a b c"], ["t1", "t2", "t1"])
    assert rep["coverage"] == {"t1": 2, "t2": 1} and rep["groups_covered"] == 2
    assert rep["mean_pairwise_similarity"] == pytest.approx(1 / 3, abs=1e-4)
