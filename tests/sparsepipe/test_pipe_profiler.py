"""The profiler: per-block times that scale with the work, sizes equal to what the blocks really output, the model
left untouched, a file the planner reads; and `plinth sparsepipe profile` on a trainer stage."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plinth.cli import main as plinth_main
from plinth.testing import make_context
from plinth_sparsepipe.data import ShapesGenerator
from plinth_sparsepipe.pipe.cluster import load_cluster
from plinth_sparsepipe.pipe.planner import make_plan
from plinth_sparsepipe.pipe.profile import load_profile, save_profile
from plinth_sparsepipe.pipe.profiler import profile_model

from .pipe_harness import step_micro_batches, tiny_blocks


class Burn(nn.Module):
    """An identity block that multiplies a 96 x 96 matrix `times` times: known work."""

    def __init__(self, times: int):
        super().__init__()
        self.times = times
        self.m = torch.randn(96, 96) / 10

    def forward(self, x):
        total = torch.zeros(())
        for _ in range(self.times):
            total = total + (self.m @ self.m).sum()
        return x.replace(x.feats + 0 * total) if hasattr(x, "feats") else x + 0 * total


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/sparsepipe/conftest.py


def test_profile_of_a_chain(tmp_path):
    from collections import OrderedDict

    from plinth_sparsepipe.sparse import nn as spnn

    tiny = tiny_blocks()
    blocks = OrderedDict(conv1=tiny["conv1"], conv1b=spnn.Conv3d(4, 4, 3), pool1=tiny["pool1"], conv2=tiny["conv2"],
                         gpool=tiny["gpool"], burn1=Burn(150), burn2=Burn(300), fc=tiny["fc"])
    model = nn.Sequential(blocks)
    batches = step_micro_batches(0, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prof = profile_model(model, batches, F.cross_entropy, warmup=1, iterations=3, device_type="cpu")
    # the model itself is untouched (the profiler trains a copy)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert prof.layer_names == ["conv1", "conv1b", "pool1", "conv2", "gpool", "burn1", "burn2", "fc"]
    assert prof.batch_size == 2 and prof.source == "measured"
    by = {layer.name: layer for layer in prof.layers}
    # the CPU clock of this thread: twice the multiplications take about twice as long
    assert 1.5 < by["burn2"].forward_s / by["burn1"].forward_s < 2.7
    # sizes are what the blocks output, averaged over the measured batches (cycled: 1, 2, 0)
    feats, coords = {}, {}
    for i in (1, 2, 0):
        x = batches[i][0]
        for name, block in list(model.named_children())[:-1]:
            x = block(x)
            f = x.feats if hasattr(x, "feats") else x
            feats[name] = feats.get(name, 0) + f.numel() * 4 / 3
            if hasattr(x, "feats"):
                coords[name] = coords.get(name, 0) + (x.coords.numel() * 4 + 8 * (x.batch_size + 1)) / 3
    for name in feats:
        assert by[name].output_feature_bytes == pytest.approx(feats[name], rel=1e-6), name
        assert by[name].output_coordinate_bytes == pytest.approx(coords.get(name, 0.0), rel=1e-6), name
    assert by["conv1"].parameter_bytes == 4 * (27 * 1 * 4 + 4 + 4)  # conv weight + BN weight and bias
    assert by["fc"].parameter_bytes == 4 * (6 * 3 + 3) and by["pool1"].parameter_bytes == 0
    assert all(layer.forward_s > 0 and layer.backward_s > 0 for layer in prof.layers)
    # a cut between conv1 and conv1b makes conv1b build the kernel map it would have shared with conv1 (a good
    # part of its forward at this size); dense outputs cost nothing
    assert by["conv1"].restart_s > 0.3 * by["conv1b"].forward_s
    assert by["gpool"].restart_s == by["fc"].restart_s == 0
    # and the planner plans with it
    save_profile(prof, tmp_path / "p.json")
    (tmp_path / "c.toml").write_text('[types.cpu]\nprofile = "p.json"\n[[servers]]\nname = "a"\n'
                                     'intra_server_bandwidth = "1 GB/s"\ndevices = { cpu = 2 }\n')
    plan = make_plan(load_cluster(tmp_path / "c.toml"))
    assert plan.layers == prof.layer_names and plan.world_size in (1, 2)


def test_the_update_is_timed_apart_from_the_backward():
    """An optimizer whose step burns known CPU time: it shows in `update_s` of each block with parameters (and of
    no other block), not in `backward_s`, so a schedule can charge it once per update."""
    import time

    m = torch.randn(96, 96) / 10

    def burn():
        for _ in range(150):
            (m @ m).sum()

    class BurningSGD(torch.optim.SGD):
        def step(self, closure=None):
            burn()
            return super().step(closure)

    t0 = time.thread_time()
    burn()
    burn_s = time.thread_time() - t0
    tiny = tiny_blocks()
    model = nn.Sequential(tiny)
    prof = profile_model(model, step_micro_batches(0, 2), F.cross_entropy, warmup=1, iterations=2,
                         make_optimizer=lambda params: BurningSGD(params, lr=0.01))
    for layer, (_, block) in zip(prof.layers, model.named_children()):
        if any(True for _ in block.parameters()):
            assert layer.update_s > 0.6 * burn_s, layer.name
            assert layer.backward_s < 0.5 * burn_s, layer.name
        else:
            assert layer.update_s == 0.0, layer.name
    assert prof.total_time_s == pytest.approx(sum(x.forward_s + x.backward_s + x.update_s for x in prof.layers))


def test_profile_command_measures_a_trainer_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    shapes = ShapesGenerator({"classes": ["sphere", "box"], "train_per_class": 4, "test_per_class": 1,
                              "num_points": 256, "cache": False}).generate(make_context(tmp_path, stage="shapes"))
    (tmp_path / "p.toml").write_text("""
[stages.shapes]
slot = "generator"
component = "shapes"
classes = ["sphere", "box"]

[stages.train]
slot = "trainer"
component = "pointcloud"
model = { name = "sparse_resnet", width = 0.25, channels = [32, 64], blocks = [1, 1] }
voxel_size = 0.1
num_points = 256
batch_size = 4
inputs = { dataset = "shapes.train" }
""")
    # the dataset is an earlier stage's output: not there before that stage has run
    code = plinth_main(["sparsepipe", "profile", str(tmp_path / "p.toml"), "train", "--out", "x.json",
                        "--run-dir", str(tmp_path / "never")])
    assert code == 2 and "until stage 'shapes' is complete, or pass --dataset" in capsys.readouterr().err
    out = tmp_path / "prof.json"
    code = plinth_main(["sparsepipe", "profile", str(tmp_path / "p.toml"), "train", "--out", str(out),
                        "--dataset", str(shapes["train"].path), "--batch-size", "2", "--warmup", "1",
                        "--iterations", "2", "--device-type", "laptop"])
    assert code == 0
    prof = load_profile(out)
    assert prof.device_type == "laptop" and prof.batch_size == 2 and prof.model == "sparse_resnet"
    assert prof.layer_names == ["stem", "stage1", "down2", "stage2", "global_pool", "head"]
    assert "one iteration:" in capsys.readouterr().out
    assert json.loads(out.read_text())["meta"]["iterations"] == 2
    assert prof.meta["emulated_speed"] == 1.0
    # an emulated type is profiled at its own speed; a speed outside (0, 1] is refused before anything is built
    code = plinth_main(["sparsepipe", "profile", str(tmp_path / "p.toml"), "train", "--out", str(out),
                        "--dataset", str(shapes["train"].path), "--batch-size", "2", "--warmup", "0",
                        "--iterations", "1", "--emulate-speed", "0.5"])
    assert code == 0 and load_profile(out).meta["emulated_speed"] == 0.5
    capsys.readouterr()
    code = plinth_main(["sparsepipe", "profile", str(tmp_path / "p.toml"), "train", "--out", str(out),
                        "--emulate-speed", "2"])
    assert code == 2 and "--emulate-speed must be in (0, 1], got 2" in capsys.readouterr().err


def test_emulated_profile_keeps_cpu_time_and_sleeps_like_the_runtime():
    """emulate_speed records the blocks' own CPU time (what the cluster's speed divides) while taking the runtime's
    sleep-then-compute wall time; every iteration starts from a batch without kernel maps."""
    import time

    model = nn.Sequential(tiny_blocks())
    batches = step_micro_batches(0, 2)
    t0 = time.perf_counter()
    plain = profile_model(model, batches, F.cross_entropy, warmup=1, iterations=2)
    plain_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = profile_model(model, batches, F.cross_entropy, warmup=1, iterations=2, emulate_speed=0.25)
    slow_wall = time.perf_counter() - t0
    assert slow.meta["emulated_speed"] == 0.25 and plain.meta["emulated_speed"] == 1.0
    assert slow_wall > 2.0 * plain_wall  # it slept about 3x its compute
    assert slow.total_time_s < 3.0 * plain.total_time_s  # but recorded CPU time, not the emulated wall time
    assert batches[0][0].cache.kmaps == {}  # the caller's batches are not given kernel maps
    with pytest.raises(ValueError, match="emulate_speed"):
        profile_model(model, batches, F.cross_entropy, emulate_speed=0.0)
