"""metrics.json in the `plinth.metrics/v1` schema (the one plinth-evals writes and `plinth report` reads), plus
the point-cloud extras beside it: per-class tables and confusion matrices (JSON and Markdown).

    {"schema": "plinth.metrics/v1", "evaluator": "pointcloud", "task": "<task>", "baseline": "<label>" | null,
     "models": {"<label>": {"path", "stage", "role": "baseline" | "model", "samples": "samples/<label>.jsonl",
                            "per_class": "samples/<label>.per_class.json",
                            "metrics": {"<task>/accuracy": {"value", "n", "ci_low", "ci_high", "ci_method",
                                                            "higher_is_better", "evaluator", "task", ...}}}}}
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from plinth import Artifact, StageContext
from plinth.rundir import write_json_atomic, write_text_atomic

SCHEMA = "plinth.metrics/v1"


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label) or "model"


def _cell(m: dict[str, Any]) -> str:
    if m["value"] != m["value"]:  # nan: the class never occurs
        return "—"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def per_class_markdown(label: str, per_class: dict[str, dict], cm: np.ndarray, classes: list[str]) -> str:
    columns = [c for c in ("accuracy", "iou") if c in next(iter(per_class.values()))]
    lines = [f"## {label}", "", "| class | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, row in per_class.items():
        lines.append(f"| {name} | {row['n']} | " + " | ".join(_cell(row[c]) for c in columns) + " |")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
              "| | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    lines += [f"| {name} | " + " | ".join(str(int(v)) for v in cm[i]) + " |" for i, name in enumerate(classes)]
    return "\n".join(lines) + "\n"


class MetricsDocument:
    def __init__(self, ctx: StageContext, evaluator: str, task: str):
        self.ctx, self.evaluator, self.task = ctx, evaluator, task
        self.models: dict[str, dict[str, Any]] = {}
        self.baseline: str | None = None
        self.markdown: list[str] = []

    def add(self, label: str, art: Artifact, role: str, metrics: dict[str, dict], per_class: dict[str, dict],
            cm: np.ndarray, samples: list[dict]) -> None:
        out = self.ctx.output_dir / "samples"
        out.mkdir(parents=True, exist_ok=True)
        name = _safe(label)
        write_text_atomic(out / f"{name}.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
        classes = list(per_class)
        write_json_atomic(out / f"{name}.per_class.json",
                          {"classes": per_class, "confusion": {"classes": classes, "matrix": cm.tolist()}})
        self.markdown.append(per_class_markdown(label, per_class, cm, classes))
        if role == "baseline":
            self.baseline = label
        self.models[label] = {
            "path": str(art.path), "stage": art.meta.get("stage"), "role": role,
            "samples": f"samples/{name}.jsonl", "per_class": f"samples/{name}.per_class.json",
            "metrics": {k: {**m, "evaluator": self.evaluator, "task": k.split("/")[0]} for k, m in metrics.items()},
        }
        self.ctx.log_metrics({f"{label}/{k}": m["value"] for k, m in metrics.items()})

    def finish(self) -> dict[str, Artifact]:
        doc = {"schema": SCHEMA, "evaluator": self.evaluator, "task": self.task, "baseline": self.baseline,
               "models": self.models}
        write_json_atomic(self.ctx.output_dir / "metrics.json", doc)
        write_text_atomic(self.ctx.output_dir / "samples" / "per_class.md",
                          f"# Per-class scores: {self.task}\n\n" + "\n".join(self.markdown))
        models = list(self.models)
        return {"metrics": self.ctx.artifact("metrics", "metrics.json", evaluator=self.evaluator, task=self.task,
                                             models=models),
                "samples": self.ctx.artifact("samples", "samples", models=models)}
