"""The `pointcloud` evaluator: scores point-cloud checkpoints on a held-out split, in the plinth.metrics/v1 schema
that `plinth report` reads, so sparse and dense models of a run compare like language models do.

Inputs: `models` (checkpoint artifacts), optional `baseline` (one checkpoint: deltas are shown against it),
`dataset` (the held-out split). Each model is scored with the inputs made the way it was trained (its
config.json's `data`). Outputs: `metrics` (metrics.json) and `samples` (per-sample JSONL, per-class tables,
confusion matrices).

Metric names: `<task>/accuracy`, `<task>/mean_class_accuracy`, `<task>/miou` (segmentation, per point through the
point->voxel maps), and `train/seconds_per_epoch`, `train/peak_rss_mb` (`train/cuda_max_allocated_mb` on a GPU),
`eval/inference_ms_per_sample`. `<task>` is `task_name`, else the stage that made the dataset.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from plinth import Artifact, ComponentConfig, ConfigError, Evaluator, StageContext

KIND = "checkpoint"


class PointcloudEvaluatorConfig(ComponentConfig):
    batch_size: int = Field(32, ge=1, description="clouds per forward pass")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: str = Field("torch", description="sparse convolution back end: torch, spconv, torchsparse")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    task_name: str | None = Field(None, description="metric prefix (default: the stage that made the dataset)")

    @field_validator("backend")
    @classmethod
    def _backend_usable(cls, name: str) -> str:
        from ..sparse.backends import check_backend

        try:
            check_backend(name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return name


def _models(ctx: StageContext) -> list[tuple[str, Artifact, str]]:
    """(label, artifact, role) with the baseline first; labels unique."""
    where = f"stage '{ctx.stage}'"
    arts = [(a, "baseline") for a in ctx.input_list("baseline")] + [(a, "model") for a in ctx.input_list("models")]
    if len(ctx.input_list("baseline")) > 1:
        raise ConfigError(f"{where}: input 'baseline' must be one checkpoint")
    if not arts:
        raise ConfigError(f"{where}: nothing to evaluate; wire `inputs = {{ models = [\"train.model\"] }}`")
    out, seen = [], {}
    for i, (art, role) in enumerate(arts):
        if art.kind != KIND:
            raise ConfigError(f"{where}: input {art.meta.get('stage', '')}.{art.meta.get('output', '')} is a "
                              f"'{art.kind}' artifact; the pointcloud evaluator scores '{KIND}' artifacts")
        label = str(art.meta.get("label") or art.meta.get("stage") or f"model{i}")
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label}#{seen[label]}", art, role))
    return out


class PointcloudEvaluator(Evaluator):
    Config = PointcloudEvaluatorConfig
    required_inputs = ("dataset",)
    input_kinds = {"dataset": "dataset", "models": KIND, "baseline": KIND}
    outputs = {"metrics": "metrics", "samples": "samples"}

    def evaluate(self, ctx: StageContext) -> dict[str, Artifact]:
        import torch

        from ..models.checkpoint import read_config
        from ..sparse import set_default_backend
        from ..train.trainer import resolve_device
        from .results import MetricsDocument

        cfg: PointcloudEvaluatorConfig = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        set_default_backend(cfg.backend)
        split = ctx.input("dataset", kind="dataset")
        task = cfg.task_name or str(split.meta.get("stage") or Path(split.path).stem)
        models = _models(ctx)
        for _, art, _ in models:
            read_config(art.path)  # every bad folder is reported before any model runs
        device = resolve_device(cfg.device, ctx)
        doc = MetricsDocument(ctx, "pointcloud", task)
        for label, art, role in models:
            scores, per_class, cm, samples = self._score(ctx, art.path, split.path, task, device)
            doc.add(label, art, role, scores, per_class, cm, samples)
        return doc.finish()

    def _score(self, ctx: StageContext, folder: Path, split_path: Path, task: str, device):
        import numpy as np
        import torch

        from ..models.checkpoint import load_checkpoint
        from ..train.data import collate_for, make_dataset
        from ..train.tasks import logits_of
        from .scores import classification_scores, confusion, cost_scores, iou, segmentation_scores

        where = f"stage '{ctx.stage}'"
        model, config = load_checkpoint(folder, device)
        dataset = make_dataset(config["data"], split_path, model.input_kind)
        if dataset.classes != config["classes"]:
            raise ConfigError(f"{where}: {split_path} has classes {dataset.classes} but {folder} was trained on "
                              f"{config['classes']}")
        if dataset.task != model.task:
            raise ConfigError(f"{where}: {split_path} is a {dataset.task} split, {folder} a {model.task} model")
        loader = torch.utils.data.DataLoader(dataset, batch_size=self.config.batch_size, shuffle=False,
                                             collate_fn=collate_for(model.input_kind))
        ignore = config["data"].get("ignore_label", -1)
        k = len(dataset.classes)
        labels, preds, scene_cms, samples, times = [], [], [], [], []
        with torch.no_grad():
            for batch in loader:
                t0 = time.perf_counter()
                out = logits_of(model(batch["input"].to(device))).argmax(1).cpu()
                times.append((time.perf_counter() - t0, len(batch["index"])))
                if model.task == "classification":
                    labels.append(batch["labels"].numpy())
                    preds.append(out.numpy())
                    continue
                point_pred = out[batch["point_to_voxel"]].numpy()
                point_label, scene = batch["point_labels"].numpy(), batch["point_batch"].numpy()
                for b, index in enumerate(batch["index"].tolist()):
                    keep = (scene == b) & (point_label != ignore)
                    cm = confusion(point_label[keep], point_pred[keep], k)
                    scene_cms.append(cm)
                    samples.append({"index": index, "source": dataset.data.sources[index], "points": int(keep.sum()),
                                    "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
                                    "miou": float(np.nanmean(iou(cm))) if cm.sum() else None})
        if model.task == "classification":
            y, p = np.concatenate(labels), np.concatenate(preds)
            scores, per_class, cm = classification_scores(y, p, dataset.classes)
            samples = [{"index": i, "source": dataset.data.sources[i], "label": dataset.classes[a],
                        "pred": dataset.classes[b], "correct": bool(a == b)}
                       for i, (a, b) in enumerate(zip(y.tolist(), p.tolist()))]
        else:
            scores, per_class, cm = segmentation_scores(scene_cms, dataset.classes)
        costs = cost_scores(config.get("training", {}), times)
        named = {f"{task}/{k}": v for k, v in scores.items()}
        named.update({f"{'eval' if k.startswith('inference') else 'train'}/{k}": v for k, v in costs.items()})
        return named, per_class, cm, samples
