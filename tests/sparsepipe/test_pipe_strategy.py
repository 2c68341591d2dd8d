"""The `sparsepipe` strategy: its config (every source of stages, clear errors before anything runs), the launch
it asks for, and the step runner it gives the unchanged `pointcloud` trainer — in one process here, through
`plinth run` and torchrun on two processes in test_pipe_run.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from plinth.errors import ConfigError
from plinth.testing import make_context
from plinth_sparsepipe.data import ShapesGenerator
from plinth_sparsepipe.models import build_model
from plinth_sparsepipe.pipe.plan import save_plan
from plinth_sparsepipe.pipe.planner import make_plan
from plinth_sparsepipe.pipe.profile import LayerProfile, Profile, save_profile
from plinth_sparsepipe.pipe.strategy import SparsePipeConfig, SparsePipeStrategy, split_points
from plinth_sparsepipe.train import PointcloudTrainer

RESNET = {"name": "sparse_resnet", "width": 0.25, "channels": [32, 64], "blocks": [1, 1]}
BLOCKS = ["stem", "stage1", "down2", "stage2", "global_pool", "head"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/sparsepipe/conftest.py


def write_cluster(tmp_path, devices: str = "{ fast = 1, slow = 1 }") -> str:
    layers = [LayerProfile(name=n, forward_s=t, backward_s=t, output_feature_bytes=1e3, parameter_bytes=1e3)
              for n, t in zip(BLOCKS, [0.3, 0.2, 0.1, 0.2, 0.01, 0.01])]
    save_profile(Profile(model="sparse_resnet", device_type="fast", batch_size=4, layers=layers),
                 tmp_path / "prof.json")
    (tmp_path / "cluster.toml").write_text(f"""
[types.fast]
profile = "prof.json"
[types.slow]
profile = "prof.json"
speed = 0.5
[[servers]]
name = "box"
intra_server_bandwidth = "1 GB/s"
devices = {devices}
""")
    return str(tmp_path / "cluster.toml")


def test_exactly_one_source_of_stages():
    for bad in ({}, {"split": ["a"], "plan": "x.json"}):
        with pytest.raises(ValueError, match="exactly one of `plan`"):
            SparsePipeConfig(**bad)
    with pytest.raises(ValueError, match="replicas: 2 stages need 2 counts"):
        SparsePipeConfig(split=["stage2"], replicas=[1])
    with pytest.raises(ValueError, match="speeds: one per rank"):
        SparsePipeConfig(split=["stage2"], speeds=[0.5])
    with pytest.raises(ValueError, match="replicas and speeds go with `split`"):
        SparsePipeConfig(plan="p.json", replicas=[1])
    with pytest.raises(ValueError, match="no such plan file"):
        SparsePipeConfig(plan="missing-plan.json")
    with pytest.raises(ValueError, match="do not split evenly over nnodes = 2"):
        SparsePipeConfig(split=["a", "b"], nnodes=2)


def test_a_cluster_is_planned_when_the_run_starts(tmp_path, capsys):
    c = SparsePipeConfig(cluster=write_cluster(tmp_path), emulate_speeds=True)
    plan = c._plan
    assert plan.kind == "planned" and plan.world_size == 2
    # two stages, one per device; processes follow the cluster file's device order (fast, slow) whichever stage
    # each runs, and each is emulated at its device type's speed
    types = [d.type for s in plan.stages for d in s.devices]
    assert sorted(types) == ["fast", "slow"] and len(plan.stages) == 2
    assert c.rank_speeds() == [1.0, 0.5]
    spec = SparsePipeStrategy(c).launch_spec()
    assert (spec.nproc_per_node, spec.nnodes) == (2, 1)
    assert "planned plan for cluster" in capsys.readouterr().err  # the table, on the user's terminal
    # the baselines run too, and pure data parallelism is one stage on both devices
    dp = SparsePipeConfig(cluster=c.cluster, plan_kind="data-parallel")._plan
    assert [s.replicas for s in dp.stages] == [2] and "planned" in dp.speedup


def test_a_plan_file_gives_the_layout(tmp_path):
    from plinth_sparsepipe.pipe.cluster import load_cluster

    path = save_plan(make_plan(load_cluster(write_cluster(tmp_path, "{ fast = 3 }"))), tmp_path / "plan.json")
    c = SparsePipeConfig(plan=str(path), schedule="1f1b")
    assert c.world_size() == c._plan.world_size
    assert SparsePipeStrategy(c).launch_spec().nproc_per_node == c.world_size()
    assert c.micro_batches_per_reader() >= 1
    (tmp_path / "bad.json").write_text(json.dumps({"format": "plinth-sparsepipe-plan/1", "kind": "planned"}))
    with pytest.raises(ValueError, match="bad.json: model: Field required"):
        SparsePipeConfig(plan=str(tmp_path / "bad.json"))


def test_default_micro_batches_suit_the_schedule():
    assert SparsePipeConfig(split=["a", "b"], schedule="gpipe").micro_batches_per_reader() == 3
    assert SparsePipeConfig(split=["a"], schedule="1f1b").micro_batches_per_reader() == 1
    # stage 0 on 2 ranks, stage 1 on 3: 2 * M must be a multiple of 6 -> M = 3
    assert SparsePipeConfig(split=["a"], replicas=[2, 3]).micro_batches_per_reader() == 3
    assert SparsePipeConfig(split=["a"], micro_batches=5).micro_batches_per_reader() == 5


def test_nccl_comes_with_gloo_for_the_cpu_messages(monkeypatch):
    """NCCL moves only CUDA tensors and ignores tags; the step statistics rank 0 collects are CPU messages, so a
    pipeline on GPUs gets gloo beside NCCL and encodes those messages on the CPU whatever the stage's device."""
    from plinth_sparsepipe.pipe.comm import DENSE, OBJECT, encode

    def backend(choice, cuda):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        return SparsePipeStrategy(SparsePipeConfig(split=[], backend=choice)).backend()

    assert backend("auto", True) == backend("nccl", False) == "cpu:gloo,cuda:nccl"
    assert backend("auto", False) == backend("gloo", True) == "gloo"
    # "meta" stands in for a GPU here: activations go to the stage's device, statistics stay on the CPU
    assert {t.device.type for t in encode(DENSE, 3, torch.ones(2, 5), device="meta")} == {"meta"}
    assert {t.device.type for t in encode(OBJECT, 3, {"loss_sum": 1.5}, device="meta")} == {"cpu"}


def test_split_points_name_the_model_blocks():
    assert split_points(BLOCKS, ["down2", "head"], "w") == [(0, 2), (2, 5), (5, 6)]
    with pytest.raises(ConfigError, match="no block 'conv9'.*blocks: stem, stage1"):
        split_points(BLOCKS, ["conv9"], "w")
    with pytest.raises(ConfigError, match="no stage may be empty"):
        split_points(BLOCKS, ["down2", "down2"], "w")


def test_the_strategy_refuses_a_model_that_is_not_a_chain(tmp_path):
    model = build_model({"name": "sparse_unet", "width": 0.25}, 1, 3)
    strategy = SparsePipeStrategy(SparsePipeConfig(split=[]))
    with pytest.raises(ConfigError, match="SparseUNet is not a chain of blocks"):
        strategy.step_runner(model, None, make_context(tmp_path, strategy=strategy))


def test_a_plan_for_another_model_is_refused(tmp_path):
    from plinth_sparsepipe.pipe.cluster import load_cluster

    path = save_plan(make_plan(load_cluster(write_cluster(tmp_path))), tmp_path / "plan.json")
    strategy = SparsePipeStrategy(SparsePipeConfig(plan=str(path)))
    vgg = build_model({"name": "sparse_vgg16_bn", "width": 0.125}, 1, 3)
    with pytest.raises(ConfigError, match="layer 0 of the plan is 'stem' but the model's block 0 is 'conv1_1'"):
        strategy.step_runner(vgg, None, make_context(tmp_path, strategy=strategy))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("shapes"), stage="shapes")
    return ShapesGenerator({"classes": ["sphere", "box", "torus"], "train_per_class": 4, "test_per_class": 1,
                            "num_points": 256, "cache": False}).generate(ctx)


def train(tmp_path, shapes, strategy=None):
    ctx = make_context(tmp_path, stage="train", inputs={"dataset": shapes["train"]}, strategy=strategy)
    cfg = {"model": RESNET, "voxel_size": 0.1, "num_points": 256, "threads": 1, "batch_size": 4, "epochs": 2,
           "checkpoint_every": 2, "learning_rate": 0.05}
    out = PointcloudTrainer(cfg).train(ctx)
    return load_file(str(out["model"].path / "model.safetensors")), ctx


def test_one_stage_pipeline_trains_like_one_process(tmp_path, shapes):
    """The pipeline runner in one process (one stage, GPipe, one micro-batch per step) against LocalRunner: the
    same weights, and it reports its measurements in metrics.jsonl and pipeline.json."""
    single, _ = train(tmp_path / "single", shapes)
    strategy = SparsePipeStrategy(SparsePipeConfig(split=[], schedule="gpipe", micro_batches=1))
    piped, ctx = train(tmp_path / "pipe", shapes, strategy)
    assert single.keys() == piped.keys()
    for k in single:
        torch.testing.assert_close(piped[k], single[k], rtol=1e-5, atol=1e-6, msg=k)
    lines = [json.loads(x) for x in (ctx.run_dir / "metrics.jsonl").read_text().splitlines()]
    piped_lines = [x for x in lines if "pipeline/stage0/busy_fraction" in x]
    # one line per train() call: the trainer calls at each checkpoint (every 2 steps) and epoch end (3 steps)
    assert [x["step"] for x in piped_lines] == [2, 3, 4, 6]
    summary = json.loads((ctx.output_dir / "pipeline.json").read_text())
    assert summary["metrics"]["pipeline/throughput_samples_per_s"] > 0
    assert [r["updates"] for r in summary["ranks"]] == [6]


def test_a_two_server_plan_runs_one_server_per_node():
    """The paper's cluster on two nodes: torchrun puts processes 0-3 on node 0 and 4-7 on node 1, so the plan's
    ranks (numbered stage by stage) are placed by server: node0's RTX devices get processes 0-3, in device order."""
    from plinth_sparsepipe.pipe.plan import PlanDevice

    c = SparsePipeConfig(cluster="examples/clusters/paper-8gpu.toml", nnodes=2, master_addr="10.0.0.1")
    where = c.placement()
    devices = {d.rank: d for s in c._plan.stages for d in s.devices}
    assert sorted(where.values()) == list(range(8))
    on_node0 = sorted((devices[r] for r, p in where.items() if p < 4), key=lambda d: where[d.rank])
    assert [d.id for d in on_node0] == [f"node0/rtx/{i}" for i in range(4)]
    assert all(isinstance(d, PlanDevice) for d in on_node0)
    spec = SparsePipeStrategy(c.model_copy(update={"print_plan": False})).launch_spec()
    assert (spec.nnodes, spec.nproc_per_node, spec.master_addr) == (2, 4, "10.0.0.1")
    # a plan that leaves a device idle cannot give both nodes the same number of processes
    with pytest.raises(ValueError, match="7 ranks, which do not split evenly over nnodes = 2"):
        SparsePipeConfig(cluster="examples/clusters/paper-8gpu.toml", nnodes=2,
                         cluster_set=["inter_server_bandwidth=1e8"])


def test_the_summary_line_quotes_both_predictions():
    import io

    from plinth_sparsepipe.pipe.schedules import Layout
    from plinth_sparsepipe.pipe.step_runner import print_summary

    summary = {"metrics": {"pipeline/throughput_samples_per_s": 40.0, "pipeline/seconds_per_step": 0.1},
               "prediction": {"time_per_batch_s": 0.08, "simulated_time_per_batch_s": 0.12, "batch_size": 4}}
    out = io.StringIO()
    print_summary(summary, Layout.from_replicas([1, 1]), file=out)
    assert "plan predicted 0.08 s steady state, 0.12 s simulated on the 1F1B schedule, per batch of 4" in out.getvalue()
    del summary["prediction"]["simulated_time_per_batch_s"]  # a plan file written before the timeline existed
    out = io.StringIO()
    print_summary(summary, Layout.from_replicas([1, 1]), file=out)
    assert "plan predicted 0.08 s steady state, per batch of 4" in out.getvalue()
