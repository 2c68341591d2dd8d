"""plinth-teacher throughput: teacher requests per second at concurrency 1 vs 8, and dedup speed on 100k texts.

Requests go over real sockets to the loopback OpenAI-compatible server (plinth_teacher.testing_server) whose
deterministic policy waits `--latency` seconds per request, standing in for a remote GPU server's generation time
(what concurrency hides); the baseline is concurrency 1 in the same run. Dedup: MinHash-LSH and exact Jaccard
(inverted index) on the same 100k short texts, with the O(n^2) all-pairs baseline timed on a subset and scaled.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/teacher_throughput.py [--requests 200] [--texts 100000]
"""

from __future__ import annotations

import argparse
import random
import time


def bench_requests(n: int, latency: float) -> dict[str, float]:
    from plinth.lm.chat import CachedChat
    from plinth_teacher.openai_backend import OpenAIChat
    from plinth_teacher.testing_server import ChatServer, RulePolicy

    out = {}
    with ChatServer(RulePolicy(), latency=latency) as srv:
        for conc in (1, 8):
            b = OpenAIChat({"base_url": srv.base_url, "model": "rule", "concurrency": conc})
            b.chat([[{"role": "user", "content": "warm up"}]] * conc)
            convs = [[{"role": "user", "content": f"Calculate {conc} * {i} + 7."}] for i in range(n)]
            t = time.perf_counter()
            answers = b.chat(convs, max_tokens=32)
            out[f"rps_c{conc}"] = n / (time.perf_counter() - t)
            assert answers[3][0].endswith(f"Answer: {conc * 3 + 7}")
            b.close()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            cached = CachedChat(OpenAIChat({"base_url": srv.base_url, "model": "rule", "concurrency": 8}), tmp)
            convs = [[{"role": "user", "content": f"Calculate {i} + 1."}] for i in range(n)]
            cached.chat(convs)
            t = time.perf_counter()
            cached.chat(convs)
            out["rps_cached"] = n / (time.perf_counter() - t)
            cached.close()
    return out


def make_texts(n: int, seed: int = 0, dup_rate: float = 0.1) -> list[str]:
    """Short instruction-like texts: 8-16 words drawn Zipf-like from a 5,000-word vocabulary (so common word
    trigrams recur across texts, as "what is the" does in real prompts); `dup_rate` of them are near copies of an
    earlier text (last word changed, or one word appended: trigram Jaccard ~0.75-0.9)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < dup_rate:
            words = rng.choice(texts).split()
            if rng.random() < 0.5:
                words[-1] = rng.choice(vocab)
            else:
                words.append(rng.choice(vocab))
        else:
            words = rng.choices(vocab, weights, k=rng.randint(8, 16))
        texts.append(" ".join(words))
    return texts


def bench_dedup(n: int, subset: int) -> dict[str, float]:
    from plinth_teacher.dedup import deduplicate, jaccard, shingles

    texts = make_texts(n)
    out: dict[str, float] = {}
    t = time.perf_counter()
    mh = deduplicate(texts, threshold=0.7, method="minhash", num_perm=64)
    out["minhash_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ex = deduplicate(texts, threshold=0.7, method="jaccard")
    out["jaccard_s"] = time.perf_counter() - t
    true_dups = n - len(ex.keep)
    out["minhash_recall"] = (n - len(mh.keep)) / true_dups if true_dups else 1.0
    out["true_duplicates"] = true_dups
    # O(n^2) all-pairs baseline on a subset, scaled by (n/subset)^2
    sub = [shingles(x) for x in texts[:subset]]
    t = time.perf_counter()
    kept: list[frozenset[str]] = []
    for s in sub:
        if not any(jaccard(s, k) >= 0.7 for k in kept):
            kept.append(s)
    out["allpairs_subset_s"] = time.perf_counter() - t
    out["allpairs_est_s"] = out["allpairs_subset_s"] * (n / subset) ** 2
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.02, help="simulated server seconds per request")
    ap.add_argument("--texts", type=int, default=100_000)
    ap.add_argument("--subset", type=int, default=3000, help="texts for the all-pairs baseline")
    args = ap.parse_args()

    r = bench_requests(args.requests, args.latency)
    print(f"teacher requests ({args.requests}, server latency {args.latency * 1000:.0f} ms, loopback HTTP):")
    print(f"  concurrency 1 : {r['rps_c1']:8.1f} req/s   (baseline)")
    print(f"  concurrency 8 : {r['rps_c8']:8.1f} req/s   ratio {r['rps_c8'] / r['rps_c1']:.2f}x  (target >= 4x)")
    print(f"  cached re-run : {r['rps_cached']:8.1f} req/s   ratio {r['rps_cached'] / r['rps_c1']:.1f}x")
    d = bench_dedup(args.texts, args.subset)
    n = args.texts
    print(f"dedup of {n} short texts (threshold 0.7, word trigrams, {d['true_duplicates']} true near-duplicates):")
    print(f"  exact Jaccard, inverted index : {d['jaccard_s']:6.1f} s  {n / d['jaccard_s']:8.0f} texts/s")
    print(f"  MinHash-LSH (64 perms)        : {d['minhash_s']:6.1f} s  {n / d['minhash_s']:8.0f} texts/s  "
          f"recall {d['minhash_recall']:.3f}")
    print(f"  all-pairs baseline            : {d['allpairs_est_s']:6.0f} s  (timed {d['allpairs_subset_s']:.1f} s on "
          f"{args.subset}, scaled n^2)  ratio MinHash/all-pairs {d['allpairs_est_s'] / d['minhash_s']:.0f}x, "
          f"inverted/all-pairs {d['allpairs_est_s'] / d['jaccard_s']:.0f}x")


if __name__ == "__main__":
    main()
