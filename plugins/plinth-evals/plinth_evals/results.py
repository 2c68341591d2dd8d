"""The metrics.json schema every plinth-evals evaluator writes, and the per-sample JSONL beside it.

    {
      "schema": "plinth.metrics/v1",
      "evaluator": "exact-match",          # component name
      "task": "gsm8k",                     # task name (file stem unless configured)
      "baseline": "baseline",              # label of the baseline model, or null
      "models": {
        "<label>": {
          "path": "/abs/model/folder", "stage": "sft", "role": "baseline" | "model",
          "samples": "samples/<label>.jsonl",          # relative to metrics.json's folder
          "metrics": {
            "gsm8k/exact_match": {"value": 0.42, "n": 256, "ci_low": 0.36, "ci_high": 0.48,
                                  "ci_method": "wilson", "higher_is_better": true,
                                  "evaluator": "exact-match", "task": "gsm8k"}
          }
        }
      }
    }

Metric names are "<task>/<metric>" so one report can hold several tasks without collisions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from plinth import Artifact, ConfigError, StageContext
from plinth.rundir import open_atomic, write_text_atomic
from plinth.stats import bootstrap_interval, mean_interval, wilson_interval

SCHEMA = "plinth.metrics/v1"


@dataclass
class Metric:
    value: float
    n: int
    ci_low: float
    ci_high: float
    ci_method: str
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, evaluator: str, task: str) -> dict[str, Any]:
        out = {
            "value": self.value,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "ci_method": self.ci_method,
            "higher_is_better": self.higher_is_better,
            "evaluator": evaluator,
            "task": task,
        }
        out.update(self.extra)
        return out


def proportion(scores: Sequence[float], **extra: Any) -> Metric:
    """A 0/1 score averaged over samples, with a Wilson interval."""
    n = len(scores)
    k = float(sum(scores))
    lo, hi = wilson_interval(k, n)
    return Metric(value=k / n if n else float("nan"), n=n, ci_low=lo, ci_high=hi, ci_method="wilson", extra=extra)


def bootstrap_mean(scores: Sequence[float], higher_is_better: bool = True, **extra: Any) -> Metric:
    """A mean of non-binary per-sample scores (ties as 0.5, pass@k), with a percentile-bootstrap interval."""
    n = len(scores)
    lo, hi = bootstrap_interval(scores)
    value = sum(scores) / n if n else float("nan")
    return Metric(value=value, n=n, ci_low=lo, ci_high=hi, ci_method="bootstrap", higher_is_better=higher_is_better,
                  extra=extra)


def normal_mean(scores: Sequence[float], higher_is_better: bool = True, **extra: Any) -> Metric:
    n = len(scores)
    lo, hi = mean_interval(scores)
    value = sum(scores) / n if n else float("nan")
    return Metric(value=value, n=n, ci_low=lo, ci_high=hi, ci_method="normal", higher_is_better=higher_is_better,
                  extra=extra)


@dataclass
class ModelRef:
    """One model under evaluation: its folder, a label for tables, and its role."""

    label: str
    path: Path
    role: str = "model"  # or "baseline"
    stage: str | None = None


def _label_of(art: Artifact, fallback: str) -> str:
    meta = art.meta or {}
    label = meta.get("label") or meta.get("stage")
    if label and meta.get("output") and meta.get("output") != "model" and not meta.get("label"):
        label = f"{label}.{meta['output']}"
    return str(label or fallback)


def _resolve_path(name_or_path: str, where: str) -> Path:
    """A model alias or folder, through plinth.lm.hf.resolve_model (its errors name the alias or folder)."""
    from plinth.lm.hf import resolve_model

    return Path(resolve_model(name_or_path))


def collect_models(ctx: StageContext, baseline: str | None = None, baseline_label: str = "baseline",
                   require_baseline: bool = False) -> list[ModelRef]:
    """The stage's models: input `models` (list), optional input `baseline` or the `baseline` parameter.

    The baseline comes first. Labels come from meta["label"], else the producing stage; duplicates get #2, #3."""
    where = f"stage '{ctx.stage}'"
    refs: list[ModelRef] = []
    base_arts = ctx.input_list("baseline")
    if len(base_arts) > 1:
        raise ConfigError(f"{where}: input 'baseline' must be one model, got {len(base_arts)}")
    if base_arts and baseline:
        raise ConfigError(f"{where}: give the baseline either as input 'baseline' or as parameter `baseline`, "
                          "not both")
    if base_arts:
        art = base_arts[0]
        if art.kind != "model":
            raise ConfigError(f"{where}: input 'baseline' is a '{art.kind}' artifact, expected 'model'")
        label = (art.meta or {}).get("label") or baseline_label
        refs.append(ModelRef(label=str(label), path=Path(art.path), role="baseline",
                             stage=(art.meta or {}).get("stage")))
    elif baseline:
        refs.append(ModelRef(label=baseline_label, path=_resolve_path(baseline, f"{where}: parameter `baseline`"),
                             role="baseline"))
    for i, art in enumerate(ctx.input_list("models")):
        if art.kind != "model":
            raise ConfigError(f"{where}: input 'models'[{i}] is a '{art.kind}' artifact, expected 'model'")
        refs.append(ModelRef(label=_label_of(art, f"model{i}"), path=Path(art.path), role="model",
                             stage=(art.meta or {}).get("stage")))
    if not refs:
        raise ConfigError(f"{where}: nothing to evaluate — wire `inputs = {{ models = [\"sft.model\"] }}` "
                          "and/or a `baseline`")
    if require_baseline and refs[0].role != "baseline":
        raise ConfigError(f"{where}: this evaluator compares against a baseline; give input 'baseline' or "
                          "parameter `baseline`")
    seen: dict[str, int] = {}
    for ref in refs:
        if ref.label in seen:
            seen[ref.label] += 1
            ref.label = f"{ref.label}#{seen[ref.label]}"
        else:
            seen[ref.label] = 1
        if not ref.path.exists():
            raise ConfigError(f"{where}: model '{ref.label}' folder {ref.path} does not exist")
    return refs


def safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label) or "model"


def write_samples(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with open_atomic(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


class MetricsWriter:
    """Collects per-model metrics and samples; `finish()` writes metrics.json and returns the artifacts."""

    def __init__(self, ctx: StageContext, evaluator: str, task: str):
        self.ctx, self.evaluator, self.task = ctx, evaluator, task
        self.models: dict[str, dict[str, Any]] = {}
        self.baseline: str | None = None
        self.task_info: dict[str, Any] = {}  # where the items came from (e.g. a teacher's held-out set), for the report

    def full_name(self, metric: str) -> str:
        """'accuracy' -> '<task>/accuracy'; names that already hold a task ('arc_easy/acc') stay as they are."""
        return metric if "/" in metric else f"{self.task}/{metric}"

    def add(self, ref: ModelRef, metrics: dict[str, Metric], samples: list[dict[str, Any]]) -> None:
        rel = f"samples/{safe_name(ref.label)}.jsonl"
        write_samples(self.ctx.output_dir / rel, samples)
        if ref.role == "baseline":
            self.baseline = ref.label
        self.models[ref.label] = {
            "path": str(ref.path),
            "stage": ref.stage,
            "role": ref.role,
            "samples": rel,
            "metrics": {self.full_name(k): m.to_json(self.evaluator, self.full_name(k).split("/")[0])
                        for k, m in metrics.items()},
        }
        flat = {f"{ref.label}/{self.full_name(k)}": m.value for k, m in metrics.items()}
        self.ctx.log_metrics(flat)

    def finish(self) -> dict[str, Artifact]:
        doc = {"schema": SCHEMA, "evaluator": self.evaluator, "task": self.task, "baseline": self.baseline,
               "models": self.models}
        if self.task_info:
            doc["task_info"] = self.task_info
        write_text_atomic(self.ctx.output_dir / "metrics.json", json.dumps(doc, indent=2, default=_json_default))
        return {
            "metrics": self.ctx.artifact("metrics", "metrics.json", evaluator=self.evaluator, task=self.task,
                                         models=list(self.models)),
            "samples": self.ctx.artifact("samples", "samples", models=list(self.models)),
        }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
