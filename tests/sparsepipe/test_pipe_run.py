"""The unchanged `pointcloud` trainer under strategy `sparsepipe` through `plinth run` (torchrun, 2 gloo processes):
the same weights as under `single` (GPipe, one micro-batch per step: the same arithmetic), the pipeline's metrics
in metrics.jsonl and pipeline.json; and (slow) kill -9 mid-training, then resume to the uninterrupted weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from plinth.rundir import load_manifest

SHAPES = """
[run]
name = "pipe"

[stages.shapes]
slot = "generator"
component = "shapes"
classes = ["sphere", "box", "torus"]
train_per_class = 4
test_per_class = 1
num_points = 256
"""
TRAIN = """
[stages.{name}]
slot = "trainer"
component = "pointcloud"
model = {{ name = "sparse_resnet", width = 0.25, channels = [32, 64], blocks = [1, 1] }}
voxel_size = 0.1
num_points = 256
batch_size = 4
epochs = {epochs}
checkpoint_every = 2
log_every = 1
threads = 1
learning_rate = 0.05
inputs = {{ dataset = "shapes.train" }}
strategy = {strategy}
"""


def weights(run_dir: Path, stage: str) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / f"stages/{stage}/out/model/model.safetensors"))


def test_pipeline_training_equals_one_process(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    pipe = '{ name = "sparsepipe", split = ["stage2"], schedule = "gpipe", micro_batches = 1, timeout_s = 120 }'
    (tmp_path / "p.toml").write_text(SHAPES + TRAIN.format(name="single", epochs=2, strategy='"single"')
                                     + TRAIN.format(name="piped", epochs=2, strategy=pipe))
    res = plinth_cmd("run", "p.toml", "--run-dir", "run", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    single, piped = weights(run, "single"), weights(run, "piped")
    assert single.keys() == piped.keys()
    for k in single:
        torch.testing.assert_close(piped[k], single[k], rtol=1e-4, atol=1e-5, msg=k)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    piped_lines = [x for x in lines if x["stage"] == "piped"]
    assert [x["step"] for x in piped_lines if "loss" in x] == list(range(1, 7))  # rank 0 reports every step
    stats = [x for x in piped_lines if "pipeline/stage1/bytes_sent" in x]
    assert stats and all(x["pipeline/stage0/bytes_sent"] > 0 for x in stats)
    summary = json.loads((run / "stages/piped/out/pipeline.json").read_text())
    assert [r["stage"] for r in summary["ranks"]] == [0, 1]
    assert "pipeline summary" in (run / "stages/piped/workers.log").read_text()


@pytest.mark.slow
def test_kill_9_mid_pipeline_then_resume_gives_the_uninterrupted_weights(tmp_path, plinth_cmd, monkeypatch):
    """1F1B over 2 processes, checkpoint every 2 steps: kill the run after a checkpoint, run again; every rank
    resumes from its own part of the checkpoint and the result equals an uninterrupted run bit for bit."""
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    pipe = '{ name = "sparsepipe", split = ["stage2"], schedule = "1f1b", timeout_s = 120 }'
    (tmp_path / "p.toml").write_text(SHAPES + TRAIN.format(name="train", epochs=6, strategy=pipe))
    res = plinth_cmd("run", "p.toml", "--run-dir", "whole", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr

    proc = subprocess.Popen([str(Path(sys.executable).parent / "plinth"), "run", "p.toml", "--run-dir", "killed",
                             "--quiet"], cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    work = tmp_path / "killed/stages/train/work"
    deadline = time.time() + 300
    while time.time() < deadline and not list(work.glob("checkpoint-*/complete.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # plinth run, torchrun and both workers
    proc.wait()
    assert load_manifest(tmp_path / "killed")["stages"]["train"]["status"] == "running"
    res = plinth_cmd("run", "p.toml", "--run-dir", "killed", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(resuming)" in res.stderr
    whole, resumed = weights(tmp_path / "whole", "train"), weights(tmp_path / "killed", "train")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
