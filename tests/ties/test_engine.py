"""The streaming engine on tiny real models: identical to the load-everything merge, and a loadable output."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from plinth_ties import ModelRef, merge
from plinth_ties.reference import merge_in_memory

from .conftest import perturb, tensors_of


def refs(fts, densities=(0.3, 0.5, 0.8), weights=(1.0, 0.6, 1.4)):
    return [ModelRef(p, f"ft{i}", w, d) for i, (p, w, d) in enumerate(zip(fts, weights, densities))]


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    "method,kw",
    [
        ("ties", {"lambda_": 1.0}),
        ("ties", {"lambda_": 0.8, "trim": "global"}),
        ("ties", {"lambda_": 1.3, "normalize": False}),
        ("dare_ties", {"seed": 7}),
        ("dare_linear", {"seed": 3}),
        ("task_arithmetic", {"lambda_": 0.5}),
        ("linear", {}),
    ],
)
def test_streaming_equals_in_memory(tiny_models, tmp_path, method, kw):
    base, fts = tiny_models
    b = None if method == "linear" else base
    res = merge(method, refs(fts), tmp_path / "stream", b, max_shard_size=30_000, **kw)
    want = merge_in_memory(method, refs(fts), tmp_path / "naive", b, **kw)
    got = tensors_of(tmp_path / "stream")
    assert_same(got, {k: v for k, v in want.items()})
    assert res.record["output"]["shards"] > 1
    if kw.get("trim") == "global":
        assert set(res.thresholds) == {"ft0", "ft1", "ft2"}
        assert res.record["global_trim_passes"] == 1  # tiny tensors are sampled whole: the prediction holds


def test_global_and_per_tensor_trim_keep_what_they_promise(tiny_models, tmp_path):
    base, fts = tiny_models
    # one model, density 0.25: global keeps 25% of all entries, per-tensor 25% of each tensor
    bt = tensors_of(base)
    ft = perturb(base, tmp_path / "scaled", seed=9)
    st = tensors_of(ft)
    # make one tensor's delta 100x larger: a global top-k spends (almost) all of its budget there
    big = "model.layers.0.mlp.up_proj.weight"
    st[big] = bt[big] + 100 * (st[big] - bt[big])
    from safetensors.torch import save_file

    save_file(st, str(ft / "model.safetensors"), metadata={"format": "pt"})
    total = sum(v.numel() for v in bt.values())
    for trim in ("per_tensor", "global"):
        out = merge("ties", [ModelRef(ft, "s", 1.0, 0.25)], tmp_path / trim, base, trim=trim, hash_inputs=False)
        mt = tensors_of(out.path)
        kept = {k: int((mt[k] != bt[k]).sum()) for k in bt}
        if trim == "per_tensor":
            for k, v in bt.items():
                assert kept[k] == max(1, int(0.25 * v.numel())), k
        else:
            assert sum(kept.values()) == int(0.25 * total)
            assert kept[big] > 0.95 * bt[big].numel()  # the big delta is kept (almost) whole
            t = out.thresholds["s"]
            deltas = torch.cat([(st[k] - bt[k]).abs().reshape(-1) for k in bt])
            assert t == float(torch.kthvalue(deltas, deltas.numel() - int(0.25 * total) + 1).values)


def test_output_folder_loads_and_generates(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, fts = tiny_models
    res = merge("ties", refs(fts), tmp_path / "m", base, max_shard_size="20KB")
    out = res.path
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "model.safetensors.index.json",
            "merge.json"} <= names
    assert not any(n.startswith(".") for n in (p.name for p in tmp_path.iterdir()))  # no partial left
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    assert len(shards) > 2 and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in tensors_of(out).values())
    rec = json.loads((out / "merge.json").read_text())
    assert rec["method"] == "ties" and [m["label"] for m in rec["models"]] == ["ft0", "ft1", "ft2"]
    assert all(len(m["sha256"]) == 64 for m in rec["models"]) and len(rec["base"]["sha256"]) == 64
    assert rec["models"][1]["weight"] == 0.6 and rec["models"][0]["density"] == 0.3
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    sd = model.state_dict()
    merged = tensors_of(out)
    for k, v in merged.items():
        assert torch.equal(sd[k], v), k
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 4 or gen[0, -1] == tok.eos_token_id


def test_differing_shard_layouts_give_the_same_result(tiny_models, tmp_path):
    from plinth_ties.writer import OutTensor, ShardedWriter
    from plinth_ties.checkpoint import TORCH_TO_CODE

    base, fts = tiny_models
    resharded = tmp_path / "ft1_sharded"
    shutil.copytree(fts[1], resharded)
    (resharded / "model.safetensors").unlink()
    st = tensors_of(fts[1])
    names = sorted(st, reverse=True)  # a different tensor order as well
    w = ShardedWriter(resharded, [OutTensor(n, TORCH_TO_CODE[str(st[n].dtype)[6:]], tuple(st[n].shape)) for n in names], 9000)
    for n in names:
        w.write(n, st[n])
    w.finish()
    assert len(list(resharded.glob("*.safetensors"))) > 3
    a = merge("ties", refs(fts), tmp_path / "a", base, hash_inputs=False)
    b = merge("ties", refs([fts[0], resharded, fts[2]]), tmp_path / "b", base, hash_inputs=False)
    assert_same(tensors_of(a.path), tensors_of(b.path))


def test_mixed_dtypes_and_output_dtype(tiny_models, tmp_path):
    base, fts = tiny_models
    b16 = perturb(base, tmp_path / "base_bf16", seed=0, scale=0.0, dtype="bfloat16")
    f16 = perturb(base, tmp_path / "ft_f16", seed=5, dtype="float16")
    bf = perturb(base, tmp_path / "ft_bf16", seed=6, dtype="bfloat16")
    models = [ModelRef(f16, "f16", density=0.5), ModelRef(bf, "bf16", density=0.5), ModelRef(fts[0], "f32", density=0.5)]
    res = merge("ties", models, tmp_path / "keep", b16, hash_inputs=False)
    got = tensors_of(res.path)
    assert {v.dtype for v in got.values()} == {torch.bfloat16}
    assert_same(got, merge_in_memory("ties", models, tmp_path / "naive", b16))
    res = merge("ties", models, tmp_path / "f32", b16, dtype="float32", hash_inputs=False)
    assert {v.dtype for v in tensors_of(res.path).values()} == {torch.float32}
    assert json.loads((res.path / "config.json").read_text())["dtype"] == "float32"


def test_tied_and_untied_heads(tmp_path):
    from plinth.lm.testing import tiny_causal_lm

    # an untied base with a tied fine-tune: the fine-tune's head is its embedding matrix
    base = tiny_causal_lm(tmp_path / "untied", seed=0, tie_word_embeddings=False)
    tied_ft = perturb(base, tmp_path / "tied_ft", seed=1, tie=True)
    st = tensors_of(tied_ft)
    del st["lm_head.weight"]
    from safetensors.torch import save_file

    save_file(st, str(tied_ft / "model.safetensors"), metadata={"format": "pt"})
    res = merge("task_arithmetic", [ModelRef(tied_ft, "t")], tmp_path / "o1", base, hash_inputs=False)
    got, b = tensors_of(res.path), tensors_of(base)
    # τ_head = θ_ft(head) − θ_base(head), and the fine-tune's head is its embedding: λ = 1 gives it back
    assert torch.allclose(got["lm_head.weight"], st["model.embed_tokens.weight"], atol=1e-6)
    assert not torch.equal(got["lm_head.weight"], b["lm_head.weight"])
    # a tied base with a fine-tune that also stores its (tied) head: the stored copy is ignored, output stays tied
    tbase = tiny_causal_lm(tmp_path / "tied", seed=0)
    stored = perturb(tbase, tmp_path / "stored_head", seed=2, tie=False)
    cfg = json.loads((stored / "config.json").read_text())
    cfg["tie_word_embeddings"] = True
    (stored / "config.json").write_text(json.dumps(cfg))
    res = merge("ties", [ModelRef(stored, "s", density=0.5)], tmp_path / "o2", tbase, hash_inputs=False)
    assert "lm_head.weight" not in tensors_of(res.path)


def test_include_and_copy_filters(tiny_models, tmp_path):
    base, fts = tiny_models
    res = merge("ties", refs(fts), tmp_path / "o", base, copy=[r"embed_tokens", r"norm"], hash_inputs=False)
    got, b = tensors_of(res.path), tensors_of(base)
    for k in b:
        same = torch.equal(got[k], b[k])
        assert same == ("embed_tokens" in k or "norm" in k), k
    res = merge("ties", refs(fts), tmp_path / "o2", base, include=[r"layers\.1\."], hash_inputs=False)
    got = tensors_of(res.path)
    for k in b:
        assert torch.equal(got[k], b[k]) == ("layers.1." not in k), k
    assert "model.norm.weight" in res.record["tensors"]["copied"]


def test_vocab_common_rows(tiny_models, tmp_path):
    from plinth_ties import MergeInputError

    base, fts = tiny_models
    big = perturb(base, tmp_path / "bigvocab", seed=4)
    st = tensors_of(big)
    emb = st["model.embed_tokens.weight"]
    st["model.embed_tokens.weight"] = torch.cat([emb, torch.randn(5, emb.shape[1])])
    from safetensors.torch import save_file

    save_file(st, str(big / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((big / "config.json").read_text())
    cfg["vocab_size"] += 5
    (big / "config.json").write_text(json.dumps(cfg))
    models = [ModelRef(fts[0], "a"), ModelRef(big, "big")]
    with pytest.raises(MergeInputError, match=r"model 'big'.*model.embed_tokens.weight.*vocab_mismatch"):
        merge("task_arithmetic", models, tmp_path / "x", base)
    assert not (tmp_path / "x").exists()
    res = merge("task_arithmetic", models, tmp_path / "o", base, vocab_mismatch="common", hash_inputs=False)
    got, b, a = tensors_of(res.path), tensors_of(base), tensors_of(fts[0])
    e = "model.embed_tokens.weight"
    assert got[e].shape == b[e].shape
    n = b[e].shape[0]
    want = b[e] + (a[e] - b[e]) + (st[e][:n] - b[e])
    assert torch.allclose(got[e], want, atol=1e-6)
    assert res.record["tensors"]["common_rows"] == {e: n}


def test_global_trim_over_common_rows_and_sampled_chunks(tiny_models, tmp_path, monkeypatch):
    """Global trim counts only the shared vocabulary rows; with small sample runs the prediction is inexact and
    the threshold must still be the exact k-th magnitude."""
    from plinth_ties import engine

    base, fts = tiny_models
    big = perturb(base, tmp_path / "big", seed=4)
    st = tensors_of(big)
    e = "model.embed_tokens.weight"
    st[e] = torch.cat([st[e], torch.randn(5, st[e].shape[1])])
    from safetensors.torch import save_file

    save_file(st, str(big / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((big / "config.json").read_text())
    cfg["vocab_size"] += 5
    (big / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(engine, "SAMPLE_CHUNK", 8)  # tiny samples: the window is a guess
    b = tensors_of(base)
    n = b[e].shape[0]
    deltas = torch.cat([(st[k][:n] if k == e else st[k]) .sub(b[k]).abs().reshape(-1) for k in b])
    k = int(0.3 * deltas.numel())
    want = float(torch.kthvalue(deltas, deltas.numel() - k + 1).values)
    res = merge("ties", [ModelRef(big, "big", density=0.3)], tmp_path / "o", base, trim="global",
                vocab_mismatch="common", hash_inputs=False)
    assert res.thresholds["big"] == want
    assert res.record["global_trim_passes"] in (1, 2)


def test_num_threads_is_scoped_to_the_merge(tiny_models, tmp_path):
    base, fts = tiny_models
    before = torch.get_num_threads()
    merge("ties", refs(fts), tmp_path / "o", base, num_threads=1, hash_inputs=False)
    assert torch.get_num_threads() == before
