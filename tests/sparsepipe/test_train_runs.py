"""The `pointcloud` trainer through `plinth run`: kill -9 mid-stage and resume to the same weights as an
uninterrupted run, and the same trainer under `ddp` with two gloo processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from plinth.rundir import load_manifest

PIPE = """
[run]
name = "pc"

[stages.shapes]
slot = "generator"
component = "shapes"
classes = ["sphere", "box", "torus"]
train_per_class = 8
test_per_class = 2
num_points = 384

[stages.train]
slot = "trainer"
component = "pointcloud"
model = { name = "sparse_resnet", width = 0.25, channels = [32, 64], blocks = [1, 1], dropout = 0.3 }
voxel_size = 0.1
num_points = 384
batch_size = 4
epochs = 5
checkpoint_every = 2
log_every = 1
threads = 1
inputs = { dataset = "shapes.train" }
"""


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "stages/train/out/model/model.safetensors"))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def complete_steps(work: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in work.glob("checkpoint-*/complete.json"))


def test_kill_9_mid_training_then_resume_gives_the_uninterrupted_weights(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    (tmp_path / "p.toml").write_text(PIPE)
    res = plinth_cmd("run", "p.toml", "--run-dir", "whole", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    reference = weights(tmp_path / "whole")

    proc = subprocess.Popen([str(Path(sys.executable).parent / "plinth"), "run", "p.toml", "--run-dir", "killed",
                             "--quiet"], cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    work = tmp_path / "killed/stages/train/work"
    deadline = time.time() + 240
    while time.time() < deadline and not [s for s in complete_steps(work) if s >= 6]:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_manifest(tmp_path / "killed")["stages"]["train"]["status"] == "running"
    killed_at = complete_steps(work)[-1]
    assert 6 <= killed_at < 30  # 6 steps per epoch x 5 epochs

    res = plinth_cmd("run", "p.toml", "--run-dir", "killed", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(resuming)" in res.stderr
    resumed = [m for m in metrics(tmp_path / "killed") if m["attempt"] == 2]
    assert resumed[0]["resumed_from_step"] == killed_at
    assert [m["step"] for m in resumed if "loss" in m] == list(range(killed_at + 1, 31))
    back = weights(tmp_path / "killed")
    assert back.keys() == reference.keys()
    for name, tensor in reference.items():  # dropout, augmentation, data order, BN statistics: all identical
        assert torch.equal(back[name], tensor), name
    whole_epochs = {m["epoch"]: m["train_loss"] for m in metrics(tmp_path / "whole") if "epoch_seconds" in m}
    killed_epochs = {m["epoch"]: m["train_loss"] for m in metrics(tmp_path / "killed") if "epoch_seconds" in m}
    assert killed_epochs == whole_epochs  # the interrupted epoch's sums were carried across the kill

def test_same_trainer_under_ddp_with_two_gloo_processes(tmp_path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    text = PIPE.replace("epochs = 5", "epochs = 2").replace("checkpoint_every = 2", "checkpoint_every = 0")
    (tmp_path / "p.toml").write_text(text + 'strategy = { name = "ddp", nproc_per_node = 2, backend = "gloo" }\n')
    res = plinth_cmd("run", "p.toml", "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr + (tmp_path / "run/stages/train/workers.log").read_text()[-3000:]
    config = json.loads((tmp_path / "run/stages/train/out/model/config.json").read_text())
    tr = config["training"]
    assert tr["world_size"] == 2 and tr["strategy"] == "DDP"
    assert tr["steps_per_epoch"] == 6  # 24 samples / 2 shards / 2 per shard (batch_size 4 over both)
    work = tmp_path / "run/stages/train/work"
    last = work / f"checkpoint-{complete_steps(work)[-1]}"
    r0 = torch.load(last / "rank-0.pt", weights_only=True)["model"]
    r1 = torch.load(last / "rank-1.pt", weights_only=True)["model"]
    params = [k for k in r0 if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(r0[k], r1[k]) for k in params)  # gradients were all-reduced: the replicas agree
    out = weights(tmp_path / "run")
    assert all(torch.equal(out[k], r0[k]) for k in params)
    steps = [m for m in metrics(tmp_path / "run") if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 13))  # rank 0 alone reports, once per step
