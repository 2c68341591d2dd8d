"""Tiny real models for the merger tests: a base and "fine-tunes" made by perturbing it (sparse-ish deltas)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def perturb(base: Path, out: Path, seed: int, scale: float = 0.02, dtype: str | None = None,
            tie: bool | None = None) -> Path:
    """Copy `base` to `out` with every float tensor moved by seeded noise (a stand-in for fine-tuning)."""
    import torch
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    g = torch.Generator().manual_seed(seed)
    for f in sorted(out.glob("*.safetensors")):
        state = load_file(str(f))
        new = {}
        for k, v in state.items():
            x = v.float() + scale * torch.randn(v.shape, generator=g)
            new[k] = x.to(getattr(torch, dtype) if dtype else v.dtype)
        if tie is False and "model.embed_tokens.weight" in new and "lm_head.weight" not in new:
            new["lm_head.weight"] = new["model.embed_tokens.weight"].clone()
        save_file(new, str(f), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    if dtype:
        cfg["dtype"] = dtype
    if tie is not None:
        cfg["tie_word_embeddings"] = tie
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(base, [ft1, ft2, ft3]) tiny Qwen2 folders with tied embeddings, float32."""
    from plinth.lm.testing import tiny_causal_lm

    root = tmp_path_factory.mktemp("ties_models")
    base = tiny_causal_lm(root / "base", seed=0)
    fts = [perturb(base, root / f"ft{i}", seed=i) for i in (1, 2, 3)]
    return base, fts


def tensors_of(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out
