"""Every bad input gets a clear error naming the model and tensor, raised before any output exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from plinth_ties import MergeInputError, ModelRef, merge

from .conftest import perturb, tensors_of


def no_output(root: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in root.iterdir() if ".partial-" in p.name]


def edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def edit_tensors(folder: Path, fn) -> None:
    from safetensors.torch import save_file

    st = tensors_of(folder)
    fn(st)
    save_file(st, str(folder / "model.safetensors"), metadata={"format": "pt"})


def bad(tmp_path, match, method="ties", models=None, base=None, **kw):
    out = tmp_path / "out"
    with pytest.raises(MergeInputError, match=match):
        merge(method, models, out, base, **kw)
    no_output(tmp_path, out)


def test_different_architecture(tiny_models, tmp_path):
    base, fts = tiny_models
    other = perturb(base, tmp_path / "other", seed=1)
    edit_config(other, model_type="mistral", architectures=["MistralForCausalLM"])
    bad(tmp_path, r"model 'other': different architecture .*model_type: 'mistral' vs",
        models=[ModelRef(fts[0]), ModelRef(other)], base=base)


def test_shape_mismatch(tiny_models, tmp_path):
    from plinth.lm.testing import tiny_causal_lm

    base, fts = tiny_models
    wide = tiny_causal_lm(tmp_path / "wide", hidden_size=48)
    bad(tmp_path, r"model 'wide': tensor '[^']+' has shape \[\d+(, \d+)*\], 'base' has", models=[ModelRef(wide)],
        base=base)


def test_vocab_mismatch_is_an_error_by_default(tiny_models, tmp_path):
    base, fts = tiny_models
    v = perturb(base, tmp_path / "v", seed=1)
    edit_tensors(v, lambda st: st.update({"model.embed_tokens.weight": torch.zeros(7, 32)}))
    edit_config(v, vocab_size=7)
    bad(tmp_path, r"model 'v': tensor 'model.embed_tokens.weight' has 7 vocabulary rows.*vocab_mismatch",
        models=[ModelRef(v)], base=base)


def test_missing_and_extra_tensors(tiny_models, tmp_path):
    base, fts = tiny_models
    gone = perturb(base, tmp_path / "gone", seed=1)
    edit_tensors(gone, lambda st: st.pop("model.layers.1.mlp.down_proj.weight"))
    bad(tmp_path, r"model 'gone': missing tensor 'model.layers.1.mlp.down_proj.weight'", models=[ModelRef(gone)],
        base=base)
    extra = perturb(base, tmp_path / "extra", seed=1)
    edit_tensors(extra, lambda st: st.update({"score.weight": torch.zeros(2, 32)}))
    bad(tmp_path, r"model 'extra': has tensor 'score.weight' that 'base' lacks", models=[ModelRef(extra)], base=base)


def test_pickle_refused_unless_allowed(tiny_models, tmp_path):
    base, fts = tiny_models
    pk = tmp_path / "pickled"
    shutil.copytree(fts[0], pk)
    torch.save(tensors_of(pk), pk / "pytorch_model.bin")
    (pk / "model.safetensors").unlink()
    bad(tmp_path, r"model 'pickled': .* only pickle weights \(pytorch_model.bin\).*refused.*allow_pickle",
        models=[ModelRef(pk)], base=base)
    a = merge("ties", [ModelRef(pk, density=0.5)], tmp_path / "a", base, allow_pickle=True, hash_inputs=False)
    b = merge("ties", [ModelRef(fts[0], density=0.5)], tmp_path / "b", base, hash_inputs=False)
    ta, tb = tensors_of(a.path), tensors_of(b.path)
    assert all(torch.equal(ta[k], tb[k]) for k in tb)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_density_outside_range(tiny_models, tmp_path, density):
    base, fts = tiny_models
    bad(tmp_path, r"model 'ft1': density .* is outside \(0, 1\]", models=[ModelRef(fts[0], "ft1", density=density)],
        base=base)


def test_empty_model_list_and_missing_base(tiny_models, tmp_path):
    base, fts = tiny_models
    bad(tmp_path, r"model list is empty", models=[], base=base)
    bad(tmp_path, r"merge 'ties': needs a base model", models=[ModelRef(fts[0])], base=None)


def test_not_a_model_folder(tiny_models, tmp_path):
    base, fts = tiny_models
    (tmp_path / "empty").mkdir()
    bad(tmp_path, r"model 'empty': .* has no config.json", models=[ModelRef(tmp_path / "empty")], base=base)
    bad(tmp_path, r"model 'nope': .* is not a folder", models=[ModelRef(tmp_path / "nope")], base=base)
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    shutil.copy(base / "config.json", noweights)
    bad(tmp_path, r"model 'noweights': .* holds no weights", models=[ModelRef(noweights)], base=base)


def test_truncated_shard(tiny_models, tmp_path):
    base, fts = tiny_models
    cut = tmp_path / "cut"
    shutil.copytree(fts[0], cut)
    f = cut / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    bad(tmp_path, r"model 'cut': tensor '[^']+' in .* inconsistent offsets", models=[ModelRef(cut)], base=base)


def test_bad_parameters(tiny_models, tmp_path):
    base, fts = tiny_models
    bad(tmp_path, r"unknown merge method 'tie'", method="tie", models=[ModelRef(fts[0])], base=base)
    bad(tmp_path, r"trim must be", models=[ModelRef(fts[0])], base=base, trim="layer")
    bad(tmp_path, r"`copy` pattern '\(' is not a valid", models=[ModelRef(fts[0])], base=base, copy=["("])
    bad(tmp_path, r"labels must be unique", models=[ModelRef(fts[0], "x"), ModelRef(fts[1], "x")], base=base)
    bad(tmp_path, r"label 'base' names both the base and a model", models=[ModelRef(fts[0], "base")], base=base)


def test_output_may_not_overlap_an_input(tiny_models, tmp_path):
    base, fts = tiny_models
    for out in (fts[0], fts[0] / "sub"):
        with pytest.raises(MergeInputError, match="overlaps the input model folder"):
            merge("ties", [ModelRef(fts[0])], out, base, overwrite=True)
    assert (fts[0] / "model.safetensors").exists() and not (fts[0] / "sub").exists()


def test_existing_output_is_not_clobbered(tiny_models, tmp_path):
    base, fts = tiny_models
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MergeInputError, match="already exists"):
        merge("ties", [ModelRef(fts[0])], out, base)
    assert (out / "keep.txt").read_text() == "mine"
    merge("ties", [ModelRef(fts[0])], out, base, overwrite=True, hash_inputs=False)
    assert not (out / "keep.txt").exists() and (out / "merge.json").exists()


def test_interrupted_merge_leaves_nothing_that_looks_complete(tiny_models, tmp_path):
    base, fts = tiny_models
    out = tmp_path / "out"

    def stop(done, total, name):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge("ties", [ModelRef(p) for p in fts], out, base, progress=stop, max_shard_size=5000)
    no_output(tmp_path, out)
