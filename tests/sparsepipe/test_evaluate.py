"""The `pointcloud` evaluator: scores against scikit-learn, per-point segmentation scores through the point->voxel
maps, the plinth.metrics/v1 document `plinth report` reads, and clear errors for wrong inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, jaccard_score

from plinth import Artifact
from plinth.errors import ConfigError
from plinth.testing import make_context
from plinth_sparsepipe.data import PointCloudDataset, ScenesGenerator, ShapesGenerator, collate
from plinth_sparsepipe.evaluate import PointcloudEvaluator
from plinth_sparsepipe.evaluate.scores import classification_scores, segmentation_scores
from plinth_sparsepipe.models import build_model, load_checkpoint, save_checkpoint

DATA = {"voxel_size": 0.1, "num_points": 512, "normalize": "unit_cube", "features": ["ones"], "grid_resolution": 32,
        "grid_points": 256, "ignore_label": -1, "seed": 0}
TRAINING = {"seconds_per_epoch": [2.0, 2.5, 2.25], "peak_rss_mb": 612.5, "peak_rss_increase_mb": 80.0}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_classification_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    scores, per_class, cm = classification_scores(y, p, ["a", "b", "c", "d"])
    assert scores["accuracy"]["value"] == pytest.approx(accuracy_score(y, p))
    assert scores["mean_class_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, p))
    np.testing.assert_array_equal(cm, confusion_matrix(y, p))
    assert scores["accuracy"]["ci_method"] == "wilson" and scores["accuracy"]["n"] == 200
    m = scores["mean_class_accuracy"]
    assert m["ci_low"] < m["value"] < m["ci_high"] and m["ci_high"] - m["ci_low"] < 0.2
    recall = confusion_matrix(y, p).diagonal() / np.bincount(y)
    assert [per_class[c]["accuracy"]["value"] for c in "abcd"] == pytest.approx(recall)
    # Wilson 95% interval for 8 of 10 is [0.490, 0.943] (Wilson 1927; e.g. Newcombe 1998, table I)
    s, _, _ = classification_scores(np.array([0] * 10), np.array([0] * 8 + [1] * 2), ["x", "y"])
    assert (s["accuracy"]["ci_low"], s["accuracy"]["ci_high"]) == pytest.approx((0.490, 0.943), abs=1e-3)
    assert s["mean_class_accuracy"]["absent"] == ["y"]  # never occurs: left out of the class mean


def test_segmentation_scores_match_scikit_learn_and_skip_absent_classes():
    rng = np.random.default_rng(1)
    scenes, ys, ps = [], [], []
    for _ in range(12):
        y = rng.integers(0, 3, 500)  # class 3 never occurs and is never predicted
        p = np.where(rng.random(500) < 0.8, y, rng.integers(0, 3, 500))
        scenes.append(confusion_matrix(y, p, labels=[0, 1, 2, 3]))
        ys.append(y)
        ps.append(p)
    y, p = np.concatenate(ys), np.concatenate(ps)
    scores, per_class, cm = segmentation_scores(scenes, ["floor", "a", "b", "c"])
    ious = jaccard_score(y, p, average=None, labels=[0, 1, 2])
    assert scores["miou"]["value"] == pytest.approx(ious.mean())
    assert [per_class[c]["iou"]["value"] for c in ("floor", "a", "b")] == pytest.approx(ious)
    assert np.isnan(per_class["c"]["iou"]["value"]) and scores["miou"]["absent"] == ["c"]
    assert scores["accuracy"]["value"] == pytest.approx(accuracy_score(y, p))
    assert scores["mean_class_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, p))
    assert scores["miou"]["n"] == 12 and scores["accuracy"]["points"] == 6000  # bootstrapped over scenes
    assert scores["miou"]["ci_low"] < scores["miou"]["value"] < scores["miou"]["ci_high"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("shapes"), stage="shapes")
    return ShapesGenerator({"classes": ["sphere", "box", "torus"], "train_per_class": 2, "test_per_class": 5,
                            "num_points": 512, "cache": False}).generate(ctx)


def checkpoint(tmp_path, name, options, classes, task="classification", in_channels=1, seed=0):
    torch.manual_seed(seed)
    model = build_model(options, in_channels, len(classes))
    folder = save_checkpoint(tmp_path / name, model, task=task, classes=classes, input=model.input_kind,
                             data=DATA, training=TRAINING)
    return Artifact("checkpoint", folder, {"label": name, "stage": name})


def test_evaluator_writes_the_metrics_schema_for_sparse_and_dense_models(tmp_path, shapes):
    classes = ["sphere", "box", "torus"]
    sparse = checkpoint(tmp_path, "sparse", {"name": "sparse_resnet", "width": 0.25}, classes)
    dense = checkpoint(tmp_path, "dense", {"name": "dense_vgg16_bn", "width": 1 / 16, "hidden": 32}, classes)
    test = Artifact("dataset", shapes["test"].path, {"stage": "shapes"})
    ctx = make_context(tmp_path / "run", stage="eval",
                       inputs={"models": [sparse], "baseline": dense, "dataset": test})
    out = PointcloudEvaluator({"batch_size": 4}).evaluate(ctx)
    doc = json.loads(out["metrics"].path.read_text())
    assert doc["schema"] == "plinth.metrics/v1" and doc["evaluator"] == "pointcloud" and doc["baseline"] == "dense"
    assert list(doc["models"]) == ["dense", "sparse"] and doc["models"]["dense"]["role"] == "baseline"
    m = doc["models"]["sparse"]["metrics"]
    assert set(m) == {"shapes/accuracy", "shapes/mean_class_accuracy", "train/seconds_per_epoch",
                      "train/peak_rss_mb", "train/peak_rss_increase_mb", "eval/inference_ms_per_sample"}
    for entry in m.values():
        assert {"value", "n", "ci_low", "ci_high", "ci_method", "higher_is_better", "evaluator", "task"} <= set(entry)
    assert m["train/seconds_per_epoch"]["value"] == pytest.approx(2.25) and not m["train/peak_rss_mb"][
        "higher_is_better"]
    # the accuracy is what the model really scores: recomputed here, one cloud at a time
    model, config = load_checkpoint(sparse.path)
    ds = PointCloudDataset(shapes["test"].path, voxel_size=0.1, num_points=512)
    with torch.no_grad():
        preds = [int(model(collate([ds[i]])["input"]).argmax()) for i in range(len(ds))]
    labels = [int(ds.data.labels[i]) for i in range(len(ds))]
    assert m["shapes/accuracy"]["value"] == pytest.approx(accuracy_score(labels, preds))
    assert m["shapes/accuracy"]["n"] == 15
    extra = json.loads((ctx.output_dir / doc["models"]["sparse"]["per_class"]).read_text())
    assert np.array(extra["confusion"]["matrix"]).sum() == 15 and extra["confusion"]["classes"] == classes
    samples = (ctx.output_dir / doc["models"]["sparse"]["samples"]).read_text().splitlines()
    assert len(samples) == 15 and set(json.loads(samples[0])) == {"index", "source", "label", "pred", "correct"}
    assert "| sphere |" in (ctx.output_dir / "samples" / "per_class.md").read_text()


def test_segmentation_is_scored_per_point_through_the_voxel_maps(tmp_path):
    gen = ScenesGenerator({"classes": ["sphere", "box"], "train_size": 1, "test_size": 3, "num_points": 1500,
                           "cache": False}).generate(make_context(tmp_path / "scenes", stage="scenes"))
    classes = ["floor", "sphere", "box"]
    unet = checkpoint(tmp_path, "unet", {"name": "sparse_unet", "width": 0.25}, classes, task="segmentation")
    test = Artifact("dataset", gen["test"].path, {"stage": "scenes"})
    ctx = make_context(tmp_path / "run", stage="eval", inputs={"models": [unet], "dataset": test})
    doc = json.loads(PointcloudEvaluator({"batch_size": 2}).evaluate(ctx)["metrics"].path.read_text())
    m = doc["models"]["unet"]["metrics"]
    model, _ = load_checkpoint(unet.path)
    ds = PointCloudDataset(gen["test"].path, voxel_size=0.1, num_points=512)
    ys, ps = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            voxel_pred = model(collate([item])["input"]).feats.argmax(1)
            keep = item["point_labels"] >= 0
            ys.append(item["point_labels"][keep].numpy())
            ps.append(voxel_pred[item["point_to_voxel"]][keep].numpy())
    y, p = np.concatenate(ys), np.concatenate(ps)
    present = sorted(set(y) | set(p))
    assert m["scenes/miou"]["value"] == pytest.approx(jaccard_score(y, p, average=None, labels=present).mean())
    assert m["scenes/accuracy"]["value"] == pytest.approx(accuracy_score(y, p))
    assert m["scenes/miou"]["n"] == 3 and m["scenes/accuracy"]["points"] == len(y)


def test_wrong_inputs_are_clear_errors(tmp_path, shapes):
    test = shapes["test"]
    hf = Artifact("model", tmp_path, {"stage": "sft", "output": "model"})
    with pytest.raises(ConfigError, match="'model' artifact; the pointcloud evaluator scores 'checkpoint'"):
        PointcloudEvaluator({}).evaluate(make_context(tmp_path / "a", "eval", {"models": [hf], "dataset": test}))
    other = checkpoint(tmp_path, "other", {"name": "sparse_resnet", "width": 0.25}, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="trained on"):
        PointcloudEvaluator({}).evaluate(make_context(tmp_path / "b", "eval", {"models": [other], "dataset": test}))
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        PointcloudEvaluator({}).evaluate(make_context(tmp_path / "c", "eval", {"dataset": test}))
    broken = Artifact("checkpoint", tmp_path / "nowhere", {"label": "broken"})
    with pytest.raises(ConfigError, match="not a point-cloud checkpoint"):
        PointcloudEvaluator({}).evaluate(make_context(tmp_path / "d", "eval", {"models": [other, broken],
                                                                               "dataset": test}))
