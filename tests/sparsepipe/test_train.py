"""The `pointcloud` trainer: LR policies, data sharding, learning on tiny real data (classification and
segmentation), the checkpoint artifact, clear errors for bad input, and the step-runner seam."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from plinth.errors import ConfigError
from plinth.testing import make_context
from plinth_sparsepipe.data import ScenesGenerator, ShapesGenerator
from plinth_sparsepipe.models import load_checkpoint
from plinth_sparsepipe.train import LocalRunner, PointcloudTrainer
from plinth_sparsepipe.train.config import PointcloudTrainerConfig
from plinth_sparsepipe.train.data import shard_order, steps_per_epoch
from plinth_sparsepipe.train.schedule import lr_factor

SHAPES = {"classes": ["sphere", "box", "torus"], "train_per_class": 8, "test_per_class": 4, "num_points": 512,
          "cache": False}
FAST = {"voxel_size": 0.1, "num_points": 512, "threads": 1, "batch_size": 6, "optimizer": "adamw",
        "learning_rate": 0.003, "weight_decay": 0.0}
RESNET = {"name": "sparse_resnet", "width": 0.25, "channels": [32, 64, 128], "blocks": [1, 1, 1]}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("shapes"), stage="shapes")
    return ShapesGenerator(SHAPES).generate(ctx)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("scenes"), stage="scenes")
    return ScenesGenerator({"classes": ["sphere", "box"], "train_size": 8, "test_size": 4, "num_points": 2048,
                            "objects": [2, 3], "cache": False}).generate(ctx)


def metrics_lines(ctx):
    path = ctx.run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_lr_policies_match_their_formulas():
    base = {"epochs": 4, "learning_rate": 0.1}
    poly = lr_factor(PointcloudTrainerConfig(**base), total_steps=100, steps_per_epoch=25)
    assert [poly(s) for s in (0, 50, 75, 99)] == pytest.approx([1.0, 0.25, 0.0625, 1e-4])
    step = lr_factor(PointcloudTrainerConfig(**base, lr_schedule="step", step_epochs=2, step_gamma=0.5), 100, 25)
    assert [step(s) for s in (0, 49, 50, 99)] == pytest.approx([1.0, 1.0, 0.5, 0.5])
    warm = lr_factor(PointcloudTrainerConfig(**base, lr_schedule="constant", warmup_steps=4), 100, 25)
    assert [warm(s) for s in (0, 1, 3, 4, 60)] == pytest.approx([0.25, 0.5, 1.0, 1.0, 1.0])


def test_epoch_order_is_split_into_disjoint_equal_shards():
    n = 23
    shards = [shard_order(n, seed=3, epoch=1, shard=(i, 4)) for i in range(4)]
    assert {len(s) for s in shards} == {6}  # padded to 24, like DistributedSampler
    assert set(np.concatenate(shards)) == set(range(n))
    assert len(np.concatenate(shards)) - len(set(np.concatenate(shards))) == 1
    assert not np.array_equal(shard_order(n, 3, 2, (0, 1)), shard_order(n, 3, 1, (0, 1)))  # new order each epoch
    np.testing.assert_array_equal(shard_order(n, 3, 1, (0, 1)), shard_order(n, 3, 1, (0, 1)))
    assert steps_per_epoch(n, 4, 3) == 2 and steps_per_epoch(n, 1, 8) == 2


def test_classifier_learns_and_writes_a_checkpoint_with_training_figures(tmp_path, shapes):
    ctx = make_context(tmp_path, stage="sparse", inputs={"dataset": shapes["train"]})
    cfg = {**FAST, "model": RESNET, "epochs": 6, "log_every": 2}
    out = PointcloudTrainer(cfg).train(ctx)
    art = out["model"]
    assert art.kind == "checkpoint" and art.meta["label"] == "sparse" and art.meta["task"] == "classification"
    model, config = load_checkpoint(art.path)
    assert config["classes"] == SHAPES["classes"] and config["data"]["voxel_size"] == 0.1
    tr = config["training"]
    assert tr["steps"] == 6 * 4 and tr["world_size"] == 1 and len(tr["seconds_per_epoch"]) == 6
    assert all(s > 0 for s in tr["seconds_per_epoch"]) and tr["peak_rss_mb"] > 50
    lines = metrics_lines(ctx)
    epochs = [m for m in lines if "epoch_seconds" in m]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert epochs[-1]["train_loss"] < 0.6 * epochs[0]["train_loss"]  # it learns
    steps = [m for m in lines if "loss" in m]
    assert [m["step"] for m in steps] == list(range(2, 25, 2)) and all(m["lr"] > 0 for m in steps)
    assert sorted(p.name for p in ctx.work_dir.iterdir()) == ["checkpoint-20", "checkpoint-24"]  # keep 2


def test_unet_segments_scenes(tmp_path, scenes):
    ctx = make_context(tmp_path, stage="seg", inputs={"dataset": scenes["train"]})
    cfg = {**FAST, "voxel_size": 0.05, "num_points": 2048, "batch_size": 4, "epochs": 5, "augment": False,
           "features": ["xyz"], "model": {"name": "sparse_unet", "width": 0.25, "channels": [32, 64, 128],
                                           "decoder": [64, 64]}}
    out = PointcloudTrainer(cfg).train(ctx)
    model, config = load_checkpoint(out["model"].path)
    assert config["task"] == "segmentation" and config["classes"] == ["floor", "sphere", "box"]
    epochs = [m for m in metrics_lines(ctx) if "epoch_seconds" in m]
    assert epochs[-1]["train_loss"] < 0.7 * epochs[0]["train_loss"]
    assert epochs[-1]["train_accuracy"] > 0.6  # per labelled voxel; the floor alone is well under that


def test_bad_inputs_fail_before_training_with_clear_errors(tmp_path, shapes, scenes):
    with pytest.raises(ConfigError, match="segmentation dataset but the model is for classification"):
        PointcloudTrainer({**FAST, "model": RESNET}).train(
            make_context(tmp_path / "a", stage="t", inputs={"dataset": scenes["train"]}))
    with pytest.raises(ConfigError, match="classification dataset but the model is for segmentation"):
        PointcloudTrainer({**FAST, "model": {"name": "sparse_unet"}}).train(
            make_context(tmp_path / "b", stage="t", inputs={"dataset": shapes["train"]}))
    with pytest.raises(ConfigError, match="stores no normals"):
        PointcloudTrainer({**FAST, "model": RESNET, "features": ["ones", "normals"]}).train(
            make_context(tmp_path / "c", stage="t", inputs={"dataset": shapes["train"]}))
    with pytest.raises(ConfigError, match="batch_size 64 is larger than the training set"):
        PointcloudTrainer({**FAST, "model": RESNET, "batch_size": 64}).train(
            make_context(tmp_path / "d", stage="t", inputs={"dataset": shapes["train"]}))
    with pytest.raises(ConfigError, match="needs input 'dataset'"):
        PointcloudTrainer({**FAST, "model": RESNET}).train(make_context(tmp_path / "e", stage="t"))


def test_validate_reports_bad_trainer_parameters(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    (tmp_path / "p.toml").write_text(
        '[stages.data]\nslot = "generator"\ncomponent = "shapes"\n\n'
        '[stages.train]\nslot = "trainer"\ncomponent = "pointcloud"\nbackend = "torchsparsee"\n'
        'features = ["ones", "rgb"]\nmodel = { name = "sparse_resnet", widht = 0.5 }\n'
        'inputs = { dataset = "data.train" }\n')
    res = plinth_cmd("validate", "p.toml", cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "stages.train.backend" in res.stderr and "did you mean 'torchsparse'" in res.stderr
    assert "stages.train.features" in res.stderr and "rgb" in res.stderr
    assert "stages.train.model.sparse_resnet.widht" in res.stderr
    text = (tmp_path / "p.toml").read_text().replace('backend = "torchsparsee"\n', "").replace(', "rgb"', "")
    (tmp_path / "p.toml").write_text(text.replace('name = "sparse_resnet", widht = 0.5', 'name = "dense_vgg16_bn"')
                                     + "grid_resolution = 16\n")
    res = plinth_cmd("validate", "p.toml", cwd=tmp_path)
    assert res.returncode != 0 and "needs at least 32" in res.stderr and "Traceback" not in res.stderr


class RecordingRunner(LocalRunner):
    """A strategy's runner: the trainer must take it and drive it only through the protocol."""

    calls: list = []

    def train(self, batches, steps, first_step, on_step):
        self.calls.append((first_step, steps))
        super().train(batches, steps, first_step, on_step)


class RunnerStrategy:
    def step_runner(self, model, spec, ctx):
        RecordingRunner.calls = []
        self.spec = spec
        return RecordingRunner(model, spec, ctx)


def test_a_strategy_with_a_step_runner_drives_the_steps(tmp_path, shapes):
    strategy = RunnerStrategy()
    ctx = make_context(tmp_path, stage="t", inputs={"dataset": shapes["train"]}, strategy=strategy)
    PointcloudTrainer({**FAST, "model": RESNET, "epochs": 2, "checkpoint_every": 3}).train(ctx)
    # 4 steps per epoch, a checkpoint every 3 steps and at each epoch end: the runner is called between them
    assert RecordingRunner.calls == [(0, 3), (3, 1), (4, 2), (6, 2)]
    assert strategy.spec.lr_factor(0) == 1.0 and strategy.spec.lr_factor(7) == pytest.approx((1 / 8) ** 2)
    assert strategy.spec.task == "classification" and strategy.spec.micro_batches == 1
    assert sorted(p.name for p in ctx.work_dir.iterdir()) == ["checkpoint-6", "checkpoint-8"]
