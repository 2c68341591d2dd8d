"""The naive merge: load every model whole, merge, save. The yardstick for the streaming engine.

Tests check that the streaming engine writes exactly these tensors; the benchmark measures the engine's time and
peak memory against it. It handles the common case only (same tensor names and shapes in every model; tied heads
read from the embeddings) and does none of the engine's input checks. Global trim here concatenates every task
vector (in the order the engine streams them: the reference model's storage order) and trims the concatenation
to its top k, the obvious in-memory way the streaming selector must reproduce bit for bit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from . import methods
from .engine import EMBED_SUFFIXES, HEAD_NAMES, METHODS, ModelRef, _copy_files


def load_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, every tensor of the folder) — the whole model in memory."""
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    state: dict[str, Any] = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(f)))
    if cfg.get("tie_word_embeddings"):
        emb = next((k for k in state if k.endswith(EMBED_SUFFIXES)), None)
        for head in HEAD_NAMES[:1]:
            if head not in state and emb is not None:
                state[head] = state[emb]
    return cfg, state


def storage_order(path: Path) -> list[str]:
    """Tensor names in file order, then byte offset: the order the engine plans (and trims) them in."""
    order = []
    for f in sorted(path.glob("*.safetensors"), key=str):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        header.pop("__metadata__", None)
        order += sorted(header, key=lambda name: header[name]["data_offsets"][0])
    return order


def merge_in_memory(
    method: str,
    models: Sequence[ModelRef],
    out: str | Path,
    base: str | Path | None = None,
    *,
    lambda_: float = 1.0,
    normalize: bool | None = None,
    trim: str = "per_tensor",
    seed: int = 0,
) -> dict[str, Any]:
    """Merge by loading everything; writes `out` (one model.safetensors + the base's files); returns the tensors."""
    import torch
    from safetensors.torch import save_file

    m = METHODS[method]
    normalize = m.normalize if normalize is None else normalize
    ref_path = Path(base) if base is not None else Path(models[0].path)
    ref_cfg, ref_state = load_state(ref_path)
    states = [load_state(Path(r.path))[1] for r in models]
    names = [n for n in ref_state if not (n in HEAD_NAMES and ref_cfg.get("tie_word_embeddings"))]
    floats = [n for n in names if ref_state[n].is_floating_point()]

    tvs: list[dict[str, Any]] = []
    for st in states:
        tvs.append({n: (st[n].float() - ref_state[n].float()) if m.uses_base else st[n].float() for n in floats})
    if m.sparsify == "magnitude" and trim == "global":
        stored = storage_order(ref_path)
        order = sorted(floats, key=stored.index)
        for r, tv in zip(models, tvs):
            if r.density < 1.0:
                flat = torch.cat([tv[n].reshape(-1) for n in order])
                methods.trim_to_density_(flat, r.density)
                for part, n in zip(torch.split(flat, [tv[n].numel() for n in order]), order):
                    tv[n] = part.reshape(tv[n].shape).clone()

    result: dict[str, Any] = {}
    for n in names:
        dtype = ref_state[n].dtype
        if n not in floats:
            result[n] = ref_state[n]
            continue
        xs = [tv[n].clone() for tv in tvs]
        for i, (r, x) in enumerate(zip(models, xs)):
            if m.sparsify == "magnitude" and r.density < 1.0 and trim != "global":
                methods.trim_to_density_(x, r.density)
            elif m.sparsify == "random":
                methods.dare_(x, r.density, methods.dare_seed(seed, i, n))
        mixed = methods.combine(xs, [r.weight for r in models], m.sign_consensus, normalize)
        result[n] = torch.add(ref_state[n].float(), mixed, alpha=lambda_) if m.uses_base else mixed
        result[n] = result[n].to(dtype)

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in result.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    _copy_files(ref_path, out, "base")
    return result
