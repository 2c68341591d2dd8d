"""TIES through the engine against a hand-written numpy TIES (Yadav et al. 2023 / mergekit), in fp32, bf16, fp16.

The reference shares no code with the plugin: trim = a stable argsort on -|τ| keeping exactly k (mergekit's top-k;
of equal magnitudes the earlier entry, the engine's documented order), sign election by the weighted sum, disjoint
weighted mean. Low-precision models are where the trim's ties matter: their task vectors take few distinct values.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from plinth_ties import ModelRef, merge

from .conftest import perturb, tensors_of

DENSITY = 0.35  # on these tiny models both bf16 and fp16 have magnitudes tied at the 35% cut
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def np_trim(tv: np.ndarray, density: float) -> np.ndarray:
    k = max(1, math.floor(density * tv.size + 1e-9))
    keep = np.argsort(-np.abs(tv), kind="stable")[:k]
    out = np.zeros_like(tv)
    out[keep] = tv[keep]
    return out


def np_ties(base: dict, fts: list[dict], weights, densities, lam, order, global_trim):
    """base/fts: name -> float64 arrays; `order`: tensor order the global trim concatenates (storage order)."""
    tvs = [{n: ft[n] - base[n] for n in order} for ft in fts]
    trimmed = []
    for tv, d in zip(tvs, densities):
        if global_trim:
            flat = np_trim(np.concatenate([tv[n].ravel() for n in order]), d)
            sizes = np.cumsum([tv[n].size for n in order])[:-1]
            trimmed.append({n: p.reshape(tv[n].shape) for n, p in zip(order, np.split(flat, sizes))})
        else:
            trimmed.append({n: np_trim(tv[n].ravel(), d).reshape(tv[n].shape) for n in order})
    out = {}
    for n in order:
        weighted = np.stack([w * t[n] for w, t in zip(weights, trimmed)])
        gamma = np.sign(weighted.sum(0))
        agree = (np.sign(weighted) == gamma) & (weighted != 0)
        num = (weighted * agree).sum(0)
        den = (np.asarray(weights)[:, None] * agree.reshape(len(weights), -1)).sum(0).reshape(gamma.shape)
        out[n] = base[n] + lam * np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)
    return out


def storage_order(folder) -> list[str]:
    f = folder / "model.safetensors"
    with open(f, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    header.pop("__metadata__", None)
    return sorted(header, key=lambda n: header[n]["data_offsets"][0])


@pytest.fixture(scope="module", params=sorted(DTYPES))
def models(request, tiny_models, tmp_path_factory):
    """A base and two fine-tunes stored in one dtype (base quantized too, as trainers save them)."""
    base32, _ = tiny_models
    root = tmp_path_factory.mktemp(f"np_{request.param}")
    base = perturb(base32, root / "base", seed=0, scale=0.0, dtype=request.param)
    fts = [perturb(base, root / f"ft{i}", seed=10 + i, scale=0.01, dtype=request.param) for i in (1, 2)]
    return request.param, base, fts


def as_f64(folder) -> dict:
    return {n: v.double().numpy() for n, v in tensors_of(folder).items()}


@pytest.mark.parametrize("trim", ["per_tensor", "global"])
def test_ties_matches_numpy_reference(models, tmp_path, trim):
    dtype, base, fts = models
    weights, densities, lam = [1.0, 0.7], [DENSITY, 0.3], 0.9
    res = merge("ties", [ModelRef(p, f"m{i}", w, d) for i, (p, w, d) in enumerate(zip(fts, weights, densities))],
                tmp_path / "out", base, lambda_=lam, trim=trim, dtype="float32", hash_inputs=False)
    b = as_f64(base)
    order = [n for n in storage_order(base) if n in b]
    want = np_ties(b, [as_f64(f) for f in fts], weights, densities, lam, order, trim == "global")
    got = tensors_of(res.path)
    assert sorted(got) == sorted(want)
    for n in order:
        np.testing.assert_allclose(got[n].double().numpy(), want[n], rtol=0, atol=1e-6, err_msg=n)


@pytest.mark.parametrize("trim", ["per_tensor", "global"])
def test_trim_keeps_exactly_k_entries(models, tmp_path, trim):
    """One model merged alone: the entries that moved are exactly the kept ones — k per tensor, or k overall."""
    dtype, base, fts = models
    def keep(n):
        return max(1, math.floor(DENSITY * n + 1e-9))

    res = merge("ties", [ModelRef(fts[0], "m", 1.0, DENSITY)], tmp_path / "out", base, trim=trim, dtype="float32",
                hash_inputs=False)
    b, f, got = tensors_of(base), tensors_of(fts[0]), tensors_of(res.path)
    changed = {n: int((got[n] != b[n].float()).sum()) for n in b}
    nonzero = {n: int((f[n] != b[n]).sum()) for n in b}
    if dtype != "float32":  # the premise: low precision ties magnitudes at the cut, `|τ| ≥ t` would keep more than k
        tvs = [(f[n].float() - b[n].float()).abs().reshape(-1) for n in b]
        excess = [int((x >= torch.kthvalue(x, x.numel() - k + 1).values).sum()) - k
                  for x in (tvs if trim == "per_tensor" else [torch.cat(tvs)]) for k in [keep(x.numel())]]
        assert max(excess) > 0
    if trim == "per_tensor":
        for n, v in b.items():
            assert changed[n] == min(nonzero[n], keep(v.numel())), n
    else:
        total = sum(v.numel() for v in b.values())
        assert sum(changed.values()) == keep(total)
