"""The Merger components: thin adapters from a pipeline stage to `engine.merge` (mergekit-style method classes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from plinth import Artifact, ConfigError, Merger, StageContext

from .config import DareConfig, LinearConfig, MergeConfig, TaskArithmeticConfig, TiesConfig


def _label(art: Artifact) -> str:
    meta = art.meta or {}
    if meta.get("label"):
        return str(meta["label"])
    if meta.get("stage"):
        return f"{meta['stage']}.{meta.get('output', 'model')}"
    return Path(art.path).name


def _keys(art: Artifact) -> set[str]:
    meta = art.meta or {}
    keys = {_label(art)}
    for k in ("label", "stage"):
        if meta.get(k):
            keys.add(str(meta[k]))
    return keys


def per_model(value: Any, arts: list[Artifact], field: str, default: float, stage: str) -> list[float]:
    """Expand a number / list / {label: value} table into one value per model, with errors naming the stage."""
    n = len(arts)
    if isinstance(value, (int, float)):
        return [float(value)] * n
    if isinstance(value, list):
        if len(value) != n:
            raise ConfigError(
                f"stage '{stage}': `{field}` lists {len(value)} values but `models` has {n} "
                f"({[_label(a) for a in arts]})"
            )
        return [float(v) for v in value]
    known = [_keys(a) for a in arts]
    for key in value:
        if not any(key in ks for ks in known):
            raise ConfigError(
                f"stage '{stage}': `{field}` names '{key}', which is none of the models {[_label(a) for a in arts]}"
            )
    out = []
    for a, ks in zip(arts, known):
        hits = [k for k in value if k in ks]
        if len(hits) > 1:
            raise ConfigError(f"stage '{stage}': `{field}` gives model '{_label(a)}' twice ({hits})")
        out.append(float(value[hits[0]]) if hits else default)
    return out


def _step(bar: Any, done: int, total: int, name: str) -> None:
    """Forward one engine step (a phase's done/total and the tensor name) to the stage's progress display."""
    bar.total, bar.done = total, done - 1
    bar.update(1, tensor=name)


class _EngineMerger(Merger):
    """Shared stage logic: resolve base and models, expand per-model values, run the streaming engine."""

    merge_method: ClassVar[str] = ""
    needs_base: ClassVar[bool] = True  # task vectors are differences from a base
    Config = MergeConfig
    required_inputs = ("models",)
    input_kinds = {"models": "model", "base": "model"}
    outputs = {"model": "model"}

    def normalizes(self) -> bool:
        """Whether the merged sum is divided by the sum of weights (the config's `normalize`, else the method's)."""
        if self.config.normalize is not None:
            return self.config.normalize
        return self.merge_method in ("ties", "dare_ties", "linear")

    def weights_problem(self, weights: list[float]) -> str | None:
        if weights and all(w == 0 for w in weights):
            return "weight: every weight is 0; the merge would throw every model away"
        if self.merge_method == "linear" and self.normalizes() and abs(sum(weights)) < 1e-8:
            return (f"weight: the weights {weights} sum to 0; a normalised linear merge divides by their sum "
                    "(set normalize = false for a plain weighted sum)")
        return None

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        """Validate-time: a base where the method needs one and it resolves, weights that make a model, and
        models (given by path) whose config.json shapes match."""
        from plinth.lm.checks import model_problem, shapes_problem

        cfg, problems = self.config, []
        models = inputs.get("models", [])
        if "base" in inputs and cfg.base is not None:
            problems.append(f"base: given both as an input and as `base = '{cfg.base}'`; keep one")
        elif cfg.base is not None and (problem := model_problem(cfg.base)):
            problems.append(f"base: {problem}")
        elif self.needs_base and "base" not in inputs and cfg.base is None:
            problems.append(f"base: '{self.merge_method}' needs a base model (task vectors are differences from "
                            "it): wire a `base` input or set `base = ...`")
        if isinstance(cfg.weight, (int, float, list)) and models:
            weights = [float(cfg.weight)] * len(models) if not isinstance(cfg.weight, list) else cfg.weight
            if len(weights) != len(models):
                problems.append(f"weight: lists {len(weights)} values but `models` has {len(models)}")
            elif problem := self.weights_problem([float(w) for w in weights]):
                problems.append(problem)
        density = getattr(cfg, "density", None)
        if isinstance(density, list) and models and len(density) != len(models):
            problems.append(f"density: lists {len(density)} values but `models` has {len(models)}")
        paths = {f"models[{i}]": p for i, p in enumerate(models) if p is not None}
        if cfg.base is not None and Path(cfg.base).exists():
            paths = {"base": Path(cfg.base), **paths}
        for p in inputs.get("base", []):
            if p is not None:
                paths = {"base": p, **paths}
        if problem := shapes_problem(paths):
            problems.append(f"inputs: {problem}")
        return problems

    def _base(self, ctx: StageContext) -> tuple[Path | None, str]:
        cfg = self.config
        if "base" in ctx.inputs:
            if cfg.base is not None:
                raise ConfigError(f"stage '{ctx.stage}': base given both as an input and as `base = '{cfg.base}'`")
            art = ctx.input("base", kind="model")
            return Path(art.path), _label(art) if (art.meta or {}) else "base"
        if cfg.base is None:
            return None, "base"
        from plinth.lm.hf import resolve_model

        return Path(resolve_model(cfg.base)), cfg.base

    def _engine_kwargs(self) -> dict[str, Any]:
        return {}

    def merge(self, ctx: StageContext) -> dict[str, Artifact]:
        from .engine import ModelRef, merge

        cfg = self.config
        arts = ctx.input_list("models")
        if not arts:
            raise ConfigError(f"stage '{ctx.stage}': input `models` is empty; list the models to merge")
        for a in arts:
            if a.kind != "model":
                raise ConfigError(f"stage '{ctx.stage}': input `models` holds a '{a.kind}' artifact ({a.path}), expected 'model'")
        weights = per_model(cfg.weight, arts, "weight", 1.0, ctx.stage)
        if problem := self.weights_problem(weights):
            raise ConfigError(f"stage '{ctx.stage}': {problem}")
        density_cfg = getattr(cfg, "density", 1.0)
        fields = type(cfg).model_fields
        densities = per_model(density_cfg, arts, "density", fields["density"].default if "density" in fields else 1.0,
                              ctx.stage)
        # the runner has already hashed artifacts made by earlier stages (meta["hash"]): reuse, don't re-read
        refs = [ModelRef(a.path, _label(a), w, d, (a.meta or {}).get("hash")) for a, w, d in zip(arts, weights, densities)]
        base, base_label = self._base(ctx)
        base_art = ctx.inputs.get("base")
        base_hash = (base_art.meta or {}).get("hash") if isinstance(base_art, Artifact) else None
        files_from = cfg.files_from
        if files_from is not None and files_from != base_label:
            match = [_label(a) for a in arts if files_from in _keys(a)]
            if not match:
                raise ConfigError(
                    f"stage '{ctx.stage}': files_from '{files_from}' is none of the models "
                    f"{[base_label] + [_label(a) for a in arts]}"
                )
            files_from = match[0]
        out = ctx.output_dir / "model"
        with ctx.progress(None, f"{self.merge_method} merge") as bar:
            result = merge(
                self.merge_method, refs, out, base,
                normalize=cfg.normalize, dtype=cfg.dtype, include=cfg.include, copy=cfg.copy_,
                vocab_mismatch=cfg.vocab_mismatch, allow_pickle=cfg.allow_pickle, files_from=files_from,
                max_shard_size=cfg.max_shard_size, hash_inputs=cfg.hash_inputs, overwrite=True, base_label=base_label,
                base_hash=base_hash, num_threads=cfg.num_threads,
                progress=lambda done, total, name: _step(bar, done, total, name),
                **self._engine_kwargs(),
            )
        rec = result.record
        ctx.log_metrics({"merge/seconds": rec["seconds"], "merge/tensors_merged": rec["tensors"]["merged"],
                         "merge/bytes_written": rec["output"]["total_size"]})
        return {"model": ctx.artifact("model", "model", method=self.merge_method,
                                      models=[r.label for r in refs], base=base_label if base else None)}


class TaskArithmeticMerger(_EngineMerger):
    """θ = θ_base + λ·Σ w_i (θ_i − θ_base)."""

    merge_method = "task_arithmetic"
    Config = TaskArithmeticConfig

    def _engine_kwargs(self) -> dict[str, Any]:
        return {"lambda_": self.config.lambda_}


class TiesMerger(TaskArithmeticMerger):
    """TIES-merging: trim, elect sign, disjoint mean (Yadav et al. 2023)."""

    merge_method = "ties"
    Config = TiesConfig

    def _engine_kwargs(self) -> dict[str, Any]:
        return {"lambda_": self.config.lambda_, "trim": self.config.trim}


class DareTiesMerger(TaskArithmeticMerger):
    """DARE drop-and-rescale, then TIES sign election and disjoint mean."""

    merge_method = "dare_ties"
    Config = DareConfig

    def _engine_kwargs(self) -> dict[str, Any]:
        return {"lambda_": self.config.lambda_, "seed": self.config.seed}


class DareLinearMerger(DareTiesMerger):
    """DARE drop-and-rescale, then a weighted sum of task vectors."""

    merge_method = "dare_linear"


class LinearMerger(_EngineMerger):
    """Weighted average of the models' weights: the fusion of paper A's code."""

    merge_method = "linear"
    Config = LinearConfig
    needs_base = False


MERGERS: dict[str, type[_EngineMerger]] = {
    "ties": TiesMerger,
    "dare_ties": DareTiesMerger,
    "dare_linear": DareLinearMerger,
    "task_arithmetic": TaskArithmeticMerger,
    "linear": LinearMerger,
}
