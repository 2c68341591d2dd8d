"""Scores from confusion matrices, each with a 95% interval (plinth.stats), as plinth.metrics/v1 entries.

Classification: one sample is one cloud, so overall accuracy gets a Wilson interval and mean class accuracy a
percentile bootstrap over samples. Segmentation: points of one scene are not independent, so every score
(point accuracy, mean class accuracy, mIoU, per-class IoU) is bootstrapped over scenes, and `n` counts scenes.
A class that never occurs (no labelled point, no sample) is left out of the class means and named in `absent`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from plinth.stats import bootstrap_interval, mean_interval, wilson_interval


def metric(value: float, n: int, ci: tuple[float, float], method: str, higher_is_better: bool = True,
           **extra: Any) -> dict[str, Any]:
    return {"value": float(value), "n": int(n), "ci_low": float(ci[0]), "ci_high": float(ci[1]), "ci_method": method,
            "higher_is_better": higher_is_better, **extra}


def confusion(labels: np.ndarray, preds: np.ndarray, classes: int) -> np.ndarray:
    """[classes, classes] counts, rows = true label, columns = prediction."""
    return np.bincount(labels * classes + preds, minlength=classes * classes).reshape(classes, classes)


def class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall per class (nan where the class never occurs)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(1)


def iou(cm: np.ndarray) -> np.ndarray:
    """TP / (TP + FP + FN) per class (nan where the class neither occurs nor is predicted)."""
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (cm.sum(0) + cm.sum(1) - tp)


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _absent(cm: np.ndarray, names: Sequence[str]) -> list[str]:
    return [names[i] for i in np.flatnonzero(cm.sum(1) == 0)]


def classification_scores(labels: np.ndarray, preds: np.ndarray, names: Sequence[str]) -> tuple[dict, dict, np.ndarray]:
    """(metrics, per-class table, confusion matrix) for one model."""
    k = len(names)
    cm = confusion(labels, preds, k)
    n = len(labels)
    correct = int(np.trace(cm))
    acc = metric(correct / n, n, wilson_interval(correct, n), "wilson")

    def mean_class_acc(idx: Sequence[int]) -> float:
        i = np.asarray(idx)
        return _nanmean(class_accuracy(confusion(labels[i], preds[i], k)))

    mca_value = _nanmean(class_accuracy(cm))
    mca = metric(mca_value, n, bootstrap_interval(range(n), mean_class_acc), "bootstrap", absent=_absent(cm, names))
    per_class = {}
    for c, name in enumerate(names):
        support = int(cm[c].sum())
        lo, hi = wilson_interval(int(cm[c, c]), support)
        per_class[name] = {"n": support, "accuracy": metric(cm[c, c] / support if support else float("nan"),
                                                            support, (lo, hi), "wilson")}
    return {"accuracy": acc, "mean_class_accuracy": mca}, per_class, cm


def segmentation_scores(scene_cms: list[np.ndarray], names: Sequence[str]) -> tuple[dict, dict, np.ndarray]:
    """(metrics, per-class table, summed confusion matrix) from one point confusion matrix per scene."""
    stack = np.stack(scene_cms)
    cm = stack.sum(0)
    n = len(scene_cms)

    def over(idx: Sequence[int]) -> np.ndarray:
        return stack[np.asarray(idx)].sum(0)

    def scored(fn, value: float, **extra: Any) -> dict[str, Any]:
        return metric(value, n, bootstrap_interval(range(n), lambda idx: fn(over(idx))), "bootstrap", **extra)

    points = int(cm.sum())
    out = {
        "accuracy": scored(lambda m: np.trace(m) / max(m.sum(), 1), np.trace(cm) / max(points, 1), points=points),
        "mean_class_accuracy": scored(lambda m: _nanmean(class_accuracy(m)), _nanmean(class_accuracy(cm)),
                                      absent=_absent(cm, names)),
        "miou": scored(lambda m: _nanmean(iou(m)), _nanmean(iou(cm)), absent=_absent(cm, names)),
    }
    per_class = {}
    for c, name in enumerate(names):
        per_class[name] = {
            "n": int(cm[c].sum()),
            "accuracy": scored(lambda m, c=c: class_accuracy(m)[c], class_accuracy(cm)[c]),
            "iou": scored(lambda m, c=c: iou(m)[c], iou(cm)[c]),
        }
    return out, per_class, cm


def cost_scores(training: dict[str, Any], batch_times: list[tuple[float, int]]) -> dict[str, dict]:
    """Training cost from the checkpoint's record (seconds per epoch, peak memory) and the inference time measured
    here (milliseconds per sample, from (seconds, samples) of each batch)."""
    out = {}
    epochs = [float(s) for s in training.get("seconds_per_epoch", [])]
    if epochs:
        out["seconds_per_epoch"] = metric(sum(epochs) / len(epochs), len(epochs), mean_interval(epochs), "normal",
                                          higher_is_better=False, epochs=epochs)
    for key in ("peak_rss_mb", "peak_rss_increase_mb", "cuda_max_allocated_mb"):
        if key in training:
            v = float(training[key])
            out[key] = metric(v, 1, (v, v), "measured", higher_is_better=False)
    samples = sum(n for _, n in batch_times)
    if samples:
        per_sample = [1000.0 * s / n for s, n in batch_times]
        out["inference_ms_per_sample"] = metric(1000.0 * sum(s for s, _ in batch_times) / samples, samples,
                                                mean_interval(per_sample), "normal", higher_is_better=False)
    return out
