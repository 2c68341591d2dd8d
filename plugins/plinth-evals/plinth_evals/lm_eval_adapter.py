"""`lm-eval`: run lm-evaluation-harness tasks on plinth model folders and map the results to plinth metrics.

Uses the harness's own `hf` model wrapper on each model folder and its `TaskManager(include_path=...)` for
local custom task YAML files (a YAML whose `dataset_path: json` points at a local JSONL runs fully offline).
Every reported metric gets plinth's interval: Wilson when the per-sample values are 0/1, a bootstrap over
per-sample values otherwise, or ±1.96·stderr when only the harness's stderr is known.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

from pydantic import Field

from plinth import Artifact, ConfigError, StageContext
from plinth.fileparams import file_field
from plinth.stats import z_value

from .base import ModelEvalConfig, ModelEvaluator
from .results import Metric, MetricsWriter, bootstrap_mean, collect_models, proportion

DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class LMEvalConfig(ModelEvalConfig):
    tasks: list[str] = Field(..., min_length=1, description="harness task (or group) names")
    include_path: list[str] = file_field(default_factory=list, description="folders/YAML files of custom tasks")
    include_defaults: bool = Field(True, description="also index the harness's built-in tasks (slower start; "
                                                     "false when only custom tasks are used)")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples (default: each task's own)")
    apply_chat_template: bool = Field(False, description="format prompts with the model's chat template")
    system_instruction: str | None = Field(None, description="system prompt when using the chat template")
    gen_kwargs: dict[str, Any] = Field(default_factory=dict, description="generation settings for generative tasks")
    model_args: dict[str, Any] = Field(default_factory=dict, description="extra args for the harness's hf model")
    seed: int = Field(0, description="random seeds handed to the harness")


class LMEval(ModelEvaluator):
    """lm-evaluation-harness tasks (built-in or local YAML) through the harness's HF wrapper."""

    name = "lm-eval"
    Config = LMEvalConfig

    def _task_manager(self) -> Any:
        try:
            from lm_eval.tasks import TaskManager
        except ImportError as exc:
            raise ConfigError("lm-eval evaluator: `pip install lm-eval` (0.4.13 installs beside this stack)") from exc
        for p in self.config.include_path:
            if not Path(p).exists():
                raise ConfigError(f"lm-eval: include_path {p} does not exist")
        manager = TaskManager(include_path=self.config.include_path or None,
                              include_defaults=self.config.include_defaults)
        known = set(manager.all_tasks)
        missing = [t for t in self.config.tasks if t not in known]
        if missing:
            import difflib

            hints = {t: difflib.get_close_matches(t, sorted(known), n=1) for t in missing}
            text = ", ".join(f"'{t}'" + (f" (did you mean '{h[0]}'?)" if h else "") for t, h in hints.items())
            raise ConfigError(f"lm-eval: unknown task {text}; custom tasks need their YAML in include_path "
                              f"{self.config.include_path or '(none given)'}")
        return manager

    def evaluate(self, ctx: StageContext) -> dict[str, Artifact]:
        c = self.config
        refs = collect_models(ctx, c.baseline, c.baseline_label)
        manager = self._task_manager()
        from lm_eval import simple_evaluate

        task_label = c.task_name or "+".join(c.tasks)
        writer = MetricsWriter(ctx, self.name, task_label)
        for ref in refs:
            args = {"pretrained": str(ref.path), "dtype": DTYPES[c.dtype]}
            args["device"] = c.device if c.device != "auto" else _auto_device()
            args.update(c.model_args)
            with ctx.progress(None, f"lm-eval {task_label} [{ref.label}]"):
                try:
                    results = simple_evaluate(
                        model="hf", model_args=args, tasks=list(c.tasks), num_fewshot=c.num_fewshot,
                        batch_size=c.batch_size, limit=c.limit, task_manager=manager, log_samples=True,
                        apply_chat_template=c.apply_chat_template, system_instruction=c.system_instruction,
                        gen_kwargs=c.gen_kwargs or None, bootstrap_iters=0, random_seed=c.seed,
                        numpy_random_seed=c.seed, torch_random_seed=c.seed, fewshot_random_seed=c.seed,
                    )
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"lm-eval on model '{ref.label}' ({ref.path}): {type(exc).__name__}: "
                                      f"{exc}") from exc
            gc.collect()
            metrics, samples = map_results(results or {})
            writer.add(ref, metrics, samples)
        return writer.finish()


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"  # the harness itself assumes cuda


def map_results(results: dict[str, Any]) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
    """Harness results -> {"<task>/<metric>[,<filter>]": Metric} and flat per-sample rows."""
    metrics: dict[str, Metric] = {}
    samples_by_task = results.get("samples") or {}
    n_samples = results.get("n-samples") or {}
    higher = results.get("higher_is_better") or {}
    rows: list[dict[str, Any]] = []
    for task, res in (results.get("results") or {}).items():
        task_samples = samples_by_task.get(task) or []
        for key, value in res.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            name = f"{task}/{metric}" + ("" if filt == "none" else f",{filt}")
            per = [s[metric] for s in task_samples if s.get("filter", filt) == filt and isinstance(
                s.get(metric), (int, float))]
            n = len(per) or int((n_samples.get(task) or {}).get("effective", 0))
            hib = bool((higher.get(task) or {}).get(metric, True))
            if per and all(v in (0, 1, 0.0, 1.0, True, False) for v in per) and abs(
                    sum(per) / len(per) - float(value)) < 1e-9:
                m = proportion([float(v) for v in per])
            elif per and abs(sum(per) / len(per) - float(value)) < 1e-9:
                m = bootstrap_mean([float(v) for v in per], higher_is_better=hib)
            else:
                se = res.get(f"{metric}_stderr,{filt}")
                if isinstance(se, (int, float)) and not math.isnan(se):
                    half = z_value() * float(se)
                    m = Metric(float(value), n, float(value) - half, float(value) + half, "stderr", hib)
                else:
                    m = Metric(float(value), n, float(value), float(value), "none", hib)
            m.higher_is_better = hib
            metrics[name] = m
        for s in task_samples:
            rows.append({"task": task, "doc_id": s.get("doc_id"), "target": s.get("target"),
                         "arguments": s.get("arguments"), "response": s.get("filtered_resps"),
                         **{k: s[k] for k in s.get("metrics", []) if k in s}})
    if not metrics:
        raise ConfigError("lm-eval returned no metrics (did every task have a test split?)")
    return metrics, rows
