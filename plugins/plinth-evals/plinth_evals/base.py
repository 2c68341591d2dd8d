"""What every model-running evaluator shares: the common config keys and the per-model loop.

A subclass implements `prepare(ctx)` (read and check the task — before any model loads) and
`evaluate_model(model, prepared, ref, ctx)` -> (metrics, samples). The base loads each model in turn, writes
samples/<label>.jsonl and metrics.json (schema in results.py) and frees the model before the next one.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from plinth import Artifact, ComponentConfig, Evaluator, StageContext
from plinth.fileparams import file_field

from .lm import EvalModel
from .results import Metric, MetricsWriter, ModelRef, collect_models


class ModelEvalConfig(ComponentConfig):
    task_name: str | None = Field(None, description="name used in metric names (default: the task file's stem)")
    baseline: str | None = file_field(
        None, kind="path_or_name", description="baseline model alias or folder (alternative to a `baseline` input artifact)"
    )
    baseline_label: str = Field("baseline", description="label of the baseline in tables")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N items (quick checks)")
    batch_size: int = Field(16, ge=1, description="prompts per forward/generate call")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="weights dtype (auto: by hardware)")
    device: str = Field("auto", description="'auto' (GPU if present), 'cpu', 'cuda', 'cuda:1', ...")


class ModelEvaluator(Evaluator):
    """Base for evaluators that load each model and score it on one task."""

    name = "evaluator"
    require_baseline = False
    Config = ModelEvalConfig
    input_kinds = {"models": "model", "baseline": "model", "task": "dataset"}
    outputs = {"metrics": "metrics", "samples": "samples"}
    #: (task-file parameter, its field-names parameter) pairs whose first row `plinth validate` checks
    task_fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        """Validate-time: something to evaluate, a baseline that resolves, task files whose first row has the
        fields this evaluator reads."""
        from plinth.lm.checks import model_problem

        from .tasks import field_of, read_rows

        c, problems = self.config, []
        if c.baseline is not None:
            if "baseline" in inputs:
                problems.append("baseline: given both as an input and as a parameter; keep one")
            elif problem := model_problem(c.baseline):
                problems.append(f"baseline: {problem}")
        has_baseline = "baseline" in inputs or c.baseline is not None
        if not inputs.get("models") and not has_baseline:
            problems.append('inputs: nothing to evaluate; wire `inputs = { models = ["sft.model"] }` and/or a baseline')
        elif self.require_baseline and not has_baseline:
            problems.append("inputs: this evaluator compares against a baseline; give input `baseline` or "
                            "parameter `baseline`")
        for file_key, fields_key in self.task_fields:
            path = getattr(c, file_key, None)
            if not path or not Path(path).is_file() or path.endswith(".txt"):
                continue
            try:
                rows = read_rows(path)
                if not rows:
                    problems.append(f"{file_key}: {path} holds no rows")
                    continue
                field_of(rows[0], getattr(c, fields_key), path, fields_key)
            except Exception as exc:  # noqa: BLE001 - a broken file is a problem to list, not a traceback
                problems.append(f"{file_key}: {str(exc).splitlines()[0]}")
        return problems

    def task_name(self, default_path: str | Path | None) -> str:
        if self.config.task_name:
            return self.config.task_name
        if default_path:
            stem = Path(default_path).name
            for suffix in (".gz", ".jsonl", ".json", ".csv", ".tsv", ".txt"):
                stem = stem.removesuffix(suffix)
            return stem
        return self.name

    def prepare(self, ctx: StageContext) -> Any:
        raise NotImplementedError

    def evaluate_model(
        self, model: EvalModel, prepared: Any, ref: ModelRef, ctx: StageContext
    ) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        raise NotImplementedError

    def task(self, prepared: Any) -> str:
        return getattr(prepared, "task", self.name)

    def evaluate(self, ctx: StageContext) -> dict[str, Artifact]:
        refs = collect_models(ctx, self.config.baseline, self.config.baseline_label, self.require_baseline)
        prepared = self.prepare(ctx)  # reads and checks the task before any model loads
        writer = MetricsWriter(ctx, self.name, self.task(prepared))
        writer.task_info = task_info(ctx)
        for ref in refs:
            model = EvalModel(ref.path, dtype=self.config.dtype, device=self.config.device,
                              batch_size=self.config.batch_size)
            try:
                metrics, samples = self.evaluate_model(model, prepared, ref, ctx)
            finally:
                model.close()
                del model
                gc.collect()
            writer.add(ref, metrics, samples)
        return writer.finish()


def task_info(ctx: StageContext) -> dict[str, Any]:
    """What the `task` input's producer recorded about it (item count, the stage, and how it was kept apart from
    training data), so the report can say what the scores were measured on."""
    if "task" not in ctx.inputs:
        return {}
    meta = ctx.input("task").meta or {}
    info = {k: meta[k] for k in ("stage", "rows", "decontamination") if k in meta}
    return info
