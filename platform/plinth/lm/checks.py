"""Validate-time checks language-model components share: does a model name resolve, do a dataset file's first
rows have the fields a trainer needs, do merged models share a shape. Each reads a few small files (config.json,
the first rows), never weights, and returns a problem string (or None) instead of raising, so `plinth validate`
can list every problem at once.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

FIRST_ROWS = 20


def model_problem(ref: str) -> str | None:
    """Why `ref` (a folder, an alias or a hub id) will not resolve to a model, or None. Converts nothing."""
    from .hf import ALIASES, _hub_offline, is_model_folder

    path = Path(ref).expanduser()
    if path.exists():
        return None if is_model_folder(path) else f"model '{ref}': the folder holds no config.json (not an HF model folder)"
    if ref.lower() in ALIASES:
        return None
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") != 1
    if looks_like_path:
        return (f"model '{ref}': no such folder, and not a known alias ({', '.join(sorted(ALIASES))}) "
                "or hub id ('org/name')")
    if _hub_offline():
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - transformers depends on it
            return None
        if not isinstance(try_to_load_from_cache(ref, "config.json"), str):
            return f"model '{ref}': not in the local Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE=1)"
    return None


def first_rows(path: Path, n: int = FIRST_ROWS) -> list[dict[str, Any]]:
    """The first `n` records of a dataset file (or the first file of a folder); raises ConfigError."""
    from ..records import iter_records

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in {".jsonl", ".json", ".parquet", ".gz"})
        if not files:
            raise ConfigError(f"dataset {path}: the folder holds no .jsonl, .json or .parquet file")
        path = files[0]
    rows = [row for _, row in itertools.islice(iter_records(path, "dataset"), n)]
    if not rows:
        raise ConfigError(f"dataset {path}: no rows")
    return rows


def rows_problem(path: Path | None, check: Callable[[list[dict[str, Any]], str], Any]) -> str | None:
    """Run a row check (e.g. `training.check_sft_rows`) on a dataset file's first rows; None when fine or unknown."""
    if path is None:
        return None
    try:
        check(first_rows(path), str(path))
    except ConfigError as exc:
        return str(exc).splitlines()[0]
    return None


def model_config(path: Path) -> dict[str, Any] | None:
    """config.json of a model folder, or None when the folder is not there yet (made by an earlier stage)."""
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size")


def shapes_problem(paths: dict[str, Path]) -> str | None:
    """Models (label -> folder) that cannot be merged tensor by tensor: architecture or shapes differ."""
    configs = {label: cfg for label, p in paths.items() if (cfg := model_config(p)) is not None}
    if len(configs) < 2:
        return None
    (ref_label, ref), *others = configs.items()
    for label, cfg in others:
        diff = [k for k in SHAPE_KEYS if k != "vocab_size" and ref.get(k) != cfg.get(k)]
        if ref.get("architectures") != cfg.get("architectures"):
            diff.insert(0, "architectures")
        if diff:
            shown = ", ".join(f"{k} {ref.get(k)!r} vs {cfg.get(k)!r}" for k in diff)
            return f"models '{ref_label}' and '{label}' differ ({shown}); they cannot be merged"
    return None


def kto_fields(rows: list[dict[str, Any]], source: str) -> None:
    """KTO's row fields on a sample of rows (the both-classes rule needs every row, so it waits for the stage)."""
    for i, row in enumerate(rows, 1):
        missing = [k for k in ("prompt", "completion", "label") if k not in row]
        if missing:
            raise ConfigError(f"dataset {source}, row {i}: missing field(s) {missing}; KTO rows need "
                              "prompt, completion and label")


def trainer_problems(config: Any, inputs: dict[str, list[Path | None]], row_check: Callable) -> list[str]:
    """What `plinth validate` checks for a Hugging Face trainer stage: one starting model, that it resolves, and
    the first rows of dataset files given by path."""
    from .training import DEFAULT_MODEL

    problems = []
    if "model" in inputs and config.model is not None:
        problems.append(f"model: both `model = {config.model!r}` and a `model` input are given; keep one")
    elif "model" not in inputs:
        problem = model_problem(config.model or DEFAULT_MODEL)
        if problem:
            problems.append(f"model: {problem}")
    if getattr(config, "eval_steps", None) and "eval_dataset" not in inputs:
        problems.append("eval_steps: set, but no `eval_dataset` input is wired to evaluate on")
    for key in ("dataset", "eval_dataset"):
        for path in inputs.get(key, []):
            problem = rows_problem(path, row_check)
            if problem:
                problems.append(f"inputs.{key}: {problem}")
    return problems
