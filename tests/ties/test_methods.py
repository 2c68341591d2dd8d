"""The merge equations against small dense references written straight from the papers (entry-by-entry loops)."""

from __future__ import annotations

import math

import pytest
import torch

from plinth_ties import methods
from plinth_ties.threshold import MagnitudeSelector, bin_of, estimate_window


# -- independent dense references ----------------------------------------------------------------------------
def ref_trim(tv: list[float], density: float) -> list[float]:
    """Keep exactly the top ⌊density·n⌋ entries by magnitude (of equal magnitudes the earlier), zero the rest."""
    if density >= 1.0:
        return list(tv)
    k = max(1, math.floor(density * len(tv) + 1e-9))
    keep = set(sorted(range(len(tv)), key=lambda j: (-abs(tv[j]), j))[:k])
    return [v if j in keep else 0.0 for j, v in enumerate(tv)]


def sgn(v: float) -> int:
    return (v > 0) - (v < 0)


def ref_ties(base, fts, weights, densities, lam, normalize=True):
    """Yadav et al. 2023, steps 1-5, with mergekit's per-model weights applied before the election."""
    tvs = [ref_trim([f - b for f, b in zip(ft, base)], d) for ft, d in zip(fts, densities)]
    out = []
    for j, b in enumerate(base):
        weighted = [w * tv[j] for w, tv in zip(weights, tvs)]
        gamma = sgn(sum(weighted))
        agree = [i for i, v in enumerate(weighted) if sgn(v) == gamma]
        num = sum(weighted[i] for i in agree)
        den = sum(weights[i] for i in agree)
        merged = num / den if (normalize and abs(den) >= 1e-8) else num
        out.append(b + lam * merged)
    return out


def ref_task_arithmetic(base, fts, weights, lam):
    return [b + lam * sum(w * (ft[j] - b) for w, ft in zip(weights, fts)) for j, b in enumerate(base)]


def ref_linear(fts, weights, normalize=True):
    tot = sum(weights) if normalize else 1.0
    return [sum(w * ft[j] for w, ft in zip(weights, fts)) / tot for j in range(len(fts[0]))]


def run_ties(base, fts, weights, densities, lam, normalize=True):
    """The implementation under test, on torch tensors, as the engine calls it."""
    b = torch.tensor(base, dtype=torch.float32)
    xs = [torch.tensor(ft, dtype=torch.float32) - b for ft in fts]
    for x, d in zip(xs, densities):
        methods.trim_to_density_(x, d)
    mixed = methods.combine(xs, weights, True, normalize)
    return (b + lam * mixed).tolist()


# -- hand-checked cases -------------------------------------------------------------------------------------
def test_sign_election_and_disjoint_mean_by_hand():
    def tvs():  # combine consumes its inputs: fresh tensors per call
        return [torch.tensor([1.0, -2.0, 3.0, 0.0]), torch.tensor([2.0, 1.0, -1.0, 0.0]),
                torch.tensor([-1.0, 1.0, -1.0, 5.0])]

    # Σ = [2, 0, 1, 5] -> γ = [+, 0, +, +]
    # entry 0: τ1, τ2 agree -> mean 1.5;  entry 1: nobody has sign 0 -> 0;  entry 2: only τ1 -> 3;
    # entry 3: zeros do not vote in the mean -> 5, not 5/3
    mixed = methods.combine(tvs(), [1.0, 1.0, 1.0], sign_consensus=True, normalize=True)
    assert mixed.tolist() == [1.5, 0.0, 3.0, 5.0]
    # without normalize the agreeing entries are summed
    mixed = methods.combine(tvs(), [1.0] * 3, sign_consensus=True, normalize=False)
    assert mixed.tolist() == [3.0, 0.0, 3.0, 5.0]


def test_weights_act_before_the_election():
    # τ1 = +1 (w 3), τ2 = -2 (w 1): weighted sum +1 -> γ = +; only model 1 agrees: 3·1 / 3 = 1
    mixed = methods.combine([torch.tensor([1.0]), torch.tensor([-2.0])], [3.0, 1.0], True, True)
    assert mixed.tolist() == [1.0]


def test_trim_by_hand():
    x = torch.tensor([0.1, -0.5, 0.3, -0.2, 0.05])
    t = methods.magnitude_threshold(x, 0.4)  # k = 2: keep -0.5 and 0.3
    assert t == pytest.approx(0.3)
    methods.trim_(x, t)
    assert x.tolist() == pytest.approx([0.0, -0.5, 0.3, 0.0, 0.0])


def test_trim_keeps_exactly_k_when_magnitudes_tie_by_hand():
    # k = 3 of 6; the 3rd largest magnitude 0.5 is shared by four entries: the first two of them are kept
    x = torch.tensor([0.5, -2.0, -0.5, 0.5, 0.1, 0.5])
    assert methods.trim_to_density_(x, 0.5) == 0.5
    assert x.tolist() == [0.5, -2.0, -0.5, 0.0, 0.0, 0.0]
    # a global budget spread over a stream of tensors: 1 tie left for both parts together
    a, b = torch.tensor([0.5, 1.0]), torch.tensor([-0.5, 0.5, 2.0])
    kept = methods.trim_(a, 0.5, 1)
    assert (kept, a.tolist()) == (1, [0.5, 1.0])
    assert methods.trim_(b, 0.5, 1 - kept) == 0 and b.tolist() == [0.0, 0.0, 2.0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("density", [0.2, 0.5, 0.05])
def test_trim_keeps_exactly_k_in_low_precision(dtype, density, monkeypatch):
    """bf16/fp16 task vectors have few distinct magnitudes: exactly k must survive all the same (and the kept
    entries are the reference's: the largest, of equal ones the first), also across tie-scan chunks."""
    monkeypatch.setattr(methods, "TIE_CHUNK", 97)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4000, generator=g).to(dtype)
    ft = (base.float() + 0.01 * torch.randn(4000, generator=g)).to(dtype)
    tv = ft.float() - base.float()  # what the engine trims: the float32 difference of two low-precision models
    n, k = tv.numel(), methods.keep_count(tv.numel(), density)
    distinct = tv.abs().unique().numel()
    if dtype != torch.float32:
        assert distinct < n / 4  # the premise: many ties
    x = tv.clone()
    methods.trim_to_density_(x, density)
    assert int((x != 0).sum()) == k
    assert x.tolist() == ref_trim(tv.tolist(), density)


@pytest.mark.parametrize("n,density,k", [(10, 0.2, 2), (10, 1.0, 10), (3, 0.1, 1), (100, 0.29, 29), (7, 0.5, 3)])
def test_keep_count(n, density, k):
    assert methods.keep_count(n, density) == k


# -- random cases against the references ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("normalize", [True, False])
def test_ties_matches_reference(seed, normalize):
    g = torch.Generator().manual_seed(seed)
    n, models = 60, 3
    base = torch.randn(n, generator=g).tolist()
    fts = [(torch.tensor(base) + torch.randn(n, generator=g)).tolist() for _ in range(models)]
    weights = (torch.rand(models, generator=g) + 0.25).tolist()
    densities = [0.2, 0.5, 1.0]
    lam = 0.7 + seed * 0.3
    got = run_ties(base, fts, weights, densities, lam, normalize)
    want = ref_ties(base, fts, weights, densities, lam, normalize)
    assert got == pytest.approx(want, abs=1e-5)


def test_ties_density_one_lambda_one_is_task_arithmetic_when_signs_agree():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(50, generator=g)
    step = torch.randn(50, generator=g)
    fts = [(base + s * step).tolist() for s in (0.5, 1.0, 2.0)]  # every task vector has the same sign pattern
    ties = run_ties(base.tolist(), fts, [1.0] * 3, [1.0] * 3, 1.0, normalize=False)
    ta = ref_task_arithmetic(base.tolist(), fts, [1.0] * 3, 1.0)
    assert ties == pytest.approx(ta, abs=1e-5)
    # and one model merged at density 1, λ 1 gives that model back
    one = run_ties(base.tolist(), fts[:1], [1.0], [1.0], 1.0)
    assert one == pytest.approx(fts[0], abs=1e-6)


def test_task_arithmetic_and_linear_match_reference():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(40, generator=g)
    fts = [base + torch.randn(40, generator=g) for _ in range(3)]
    w = [0.5, 0.3, 0.2]
    mixed = methods.combine([f - base for f in fts], w, False, False)
    assert (base + 1.5 * mixed).tolist() == pytest.approx(
        ref_task_arithmetic(base.tolist(), [f.tolist() for f in fts], w, 1.5), abs=1e-5)
    lin = methods.combine([f.clone() for f in fts], [1.0, 3.0, 1.0], False, True)
    assert lin.tolist() == pytest.approx(ref_linear([f.tolist() for f in fts], [1.0, 3.0, 1.0]), abs=1e-5)
    # the paper's 0.05/0.95 fusion
    lin = methods.combine([fts[0].clone(), fts[1].clone()], [0.05, 0.95], False, True)
    assert lin.tolist() == pytest.approx((0.05 * fts[0] + 0.95 * fts[1]).tolist(), abs=1e-5)


def test_dare_drops_and_rescales_deterministically():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    y = methods.dare_(x.clone(), 0.3, seed=42)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.02
    assert torch.allclose(y[kept], x[kept] / 0.3)
    assert torch.equal(y, methods.dare_(x.clone(), 0.3, seed=42))
    assert not torch.equal(y, methods.dare_(x.clone(), 0.3, seed=43))
    # density 1 keeps everything: DARE then reduces to plain task arithmetic
    assert torch.equal(methods.dare_(x.clone(), 1.0, seed=1), x)
    assert methods.dare_seed(0, 0, "a") != methods.dare_seed(0, 1, "a") != methods.dare_seed(0, 0, "b")


# -- the streaming exact selector ----------------------------------------------------------------------------
def stream_select(parts, k, window=None):
    sel = MagnitudeSelector(k, window)
    for p in parts:
        sel.add(p.clone())
    sel.next_pass()
    if sel.needs_second_pass:
        for p in parts:
            sel.add(p.clone())
    return sel.value(), sel.needs_second_pass


@pytest.mark.parametrize("seed", range(4))
def test_selector_equals_kthvalue_of_concatenation(seed):
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(s, generator=g) * scale for s, scale in [(1000, 1e-4), (37, 10.0), (5000, 1.0), (1, 3.0)]]
    parts.append(torch.zeros(300))  # many exact ties at 0
    parts.append(torch.full((50,), -0.5))  # ties at a non-zero value
    flat = torch.cat([p.abs() for p in parts])
    n = flat.numel()
    for k in [1, 2, 17, n // 5, n // 2, n - 300, n - 1, n]:
        want = float(torch.kthvalue(flat, n - k + 1).values)
        # no window: always two passes
        assert stream_select(parts, k) == (want, True), k
        # a window predicted from a sample: one pass when it holds the answer, and exact either way
        smp = [(p.abs()[::7], p[::7].numel() and p.numel() / p[::7].numel()) for p in parts if p.numel()]
        win = estimate_window(smp, k, n)
        value, second = stream_select(parts, k, win)
        assert value == want, k
        assert second == (not win[0] <= bin_of(want) <= win[1])
        # a window that misses falls back to the second pass and is still exact
        assert stream_select(parts, k, (0, 0) if want > 1e-30 else (20000, 20001)) == (want, True), k


@pytest.mark.parametrize("k", [1, 40, 60, 99, 150, 160])
def test_selector_counts_the_ties_inside_the_top_k(k):
    parts = [torch.tensor([3.0] * 50), torch.tensor([1.0] * 30 + [2.0] * 20), torch.tensor([1.0] * 40 + [0.5] * 20)]
    sel = MagnitudeSelector(k)
    for p in parts:
        sel.add(p.clone())
    sel.next_pass()
    for p in parts:
        sel.add(p.clone())
    flat = sorted(torch.cat(parts).tolist(), reverse=True)
    t = flat[k - 1]
    assert (sel.value(), sel.ties()) == (t, k - sum(v > t for v in flat))


def test_window_estimate_is_usually_one_pass():
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(20000, generator=g) * s for s in (0.01, 0.1, 1.0, 0.05)]
    n = sum(p.numel() for p in parts)
    k = n // 5
    smp = [(p.abs()[:2000], 10.0) for p in parts]
    value, second = stream_select(parts, k, estimate_window(smp, k, n))
    assert not second
    assert value == float(torch.kthvalue(torch.cat(parts).abs(), n - k + 1).values)


def test_selector_rejects_k_beyond_entries():
    sel = MagnitudeSelector(10)
    sel.add(torch.ones(3))
    with pytest.raises(ValueError):
        sel.next_pass()
