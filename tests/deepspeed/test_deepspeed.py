"""The `deepspeed` strategy: the generated DeepSpeed JSON, validation, and real 2-process ZeRO runs on the CPU
(gloo) launched by `plinth run` itself."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from plinth.testing import make_context
from plinth.lm.testing import tiny_causal_lm

from plinth_deepspeed import DeepSpeedStrategy, build_ds_config
from plinth_deepspeed.ds_config import DeepSpeedConfig


def test_zero2_preset_leaves_trainer_owned_values_auto():
    cfg = build_ds_config(DeepSpeedConfig(zero_stage=2))
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["train_micro_batch_size_per_gpu"] == cfg["gradient_accumulation_steps"] == "auto"
    assert cfg["gradient_clipping"] == "auto" and cfg["bf16"] == {"enabled": "auto"}
    assert "offload_optimizer" not in cfg["zero_optimization"]


def test_zero3_offload_and_precision():
    cfg = build_ds_config(DeepSpeedConfig(zero_stage=3, offload_optimizer="cpu", offload_param="cpu",
                                          precision="bf16", gradient_clipping=0.5))
    z = cfg["zero_optimization"]
    assert z["stage"] == 3 and z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert z["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["bf16"] == {"enabled": True} and cfg["fp16"] == {"enabled": False} and cfg["gradient_clipping"] == 0.5


def test_stage0_is_plain_data_parallel():
    z = build_ds_config(DeepSpeedConfig(zero_stage=0))["zero_optimization"]
    assert z == {"stage": 0}


def test_user_json_passes_through_and_extra_wins(tmp_path):
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"stage": 1, "reduce_bucket_size": 5e7},
                                "train_micro_batch_size_per_gpu": "auto", "communication_data_type": "fp32"}))
    cfg = build_ds_config(DeepSpeedConfig(zero_stage=2, config_file=str(user), extra={"steps_per_print": 5}))
    assert cfg["zero_optimization"]["stage"] == 1 and cfg["zero_optimization"]["reduce_bucket_size"] == 5e7
    assert cfg["communication_data_type"] == "fp32" and cfg["steps_per_print"] == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"zero_stage": 2, "offload_param": "cpu"}, "offload_param needs zero_stage = 3"),
        ({"zero_stage": 0, "offload_optimizer": "cpu"}, "offload_optimizer needs zero_stage >= 1"),
        ({"zero_stage": 3, "offload_param": "nvme"}, "nvme offload needs nvme_path"),
        ({"zero_stage": 4}, "zero_stage"),
        ({"nnodes": 2}, "explicit master_port"),
        ({"config_file": "/no/such/ds.json"}, "no such file"),
        ({"zero_stag": 2}, "zero_stag"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        DeepSpeedConfig(**kwargs)


def test_launch_spec_and_training_arguments(tmp_path):
    s = DeepSpeedStrategy({"zero_stage": 3, "nproc_per_node": 2, "nnodes": 2, "node_rank": 1,
                           "master_addr": "10.0.0.1", "master_port": 29555, "precision": "fp32"})
    spec = s.launch_spec()
    assert (spec.nproc_per_node, spec.nnodes, spec.node_rank, spec.master_addr, spec.master_port, spec.world_size) \
        == (2, 2, 1, "10.0.0.1", 29555, 4)
    args = s.training_arguments(make_context(tmp_path))
    assert args["deepspeed"]["zero_optimization"]["stage"] == 3 and args["bf16"] is False
    import torch

    if not torch.cuda.is_available():
        assert args["ddp_backend"] == "gloo" and DeepSpeedStrategy({}).launch_spec().nproc_per_node == 1


def test_registered_through_entry_point():
    from plinth.plugins import load_plugins

    assert load_plugins().get("strategy", "deepspeed") is DeepSpeedStrategy


# -- real runs: 2 processes on the CPU with gloo, launched by `plinth run` ------------------------------------
# ~20-25 s each once DeepSpeed's CPU shm comm op is compiled; the very first run on a machine compiles it (~70 s,
# cached under ~/.cache/torch_extensions).
PIPELINE = """
[run]
name = "ds-test"

[stages.train]
slot = "trainer"
component = "{component}"
model = "{model}"
max_steps = 6
batch_size = 4
learning_rate = {lr}
logging_steps = 2
save_steps = 3
max_length = 64
{extra}
inputs = {{ dataset = {{ path = "{data}", kind = "dataset" }} }}
strategy = {{ name = "deepspeed", zero_stage = {stage}, nproc_per_node = 2 }}
"""


def _rows(kto: bool) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for a in range(10):
        for b in range(10):
            rows.append({"prompt": f"{a}+{b}=", "completion": str(a + b)} | ({"label": True} if kto else {}))
            if kto:
                rows.append({"prompt": f"{a}+{b}=", "completion": rng.choice(["zz", "qq"]), "label": False})
    return rows


def _run_ds(tmp_path: Path, component: str, stage: int) -> tuple[dict, Path]:
    model = tiny_causal_lm(tmp_path / "tiny", hidden_size=64)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(component == "kto")))
    extra = 'beta = 0.5' if component == "kto" else ""
    pipe = tmp_path / "p.toml"
    pipe.write_text(PIPELINE.format(component=component, model=model, data=data, stage=stage, extra=extra,
                                    lr=1e-3 if component == "kto" else 3e-3))
    exe = Path(sys.executable).parent / "plinth"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([str(exe), "run", str(pipe), "--run-dir", str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    rec = manifest["stages"]["train"]
    assert rec["status"] == "complete" and rec["strategy"] == "deepspeed"
    summary = json.loads((tmp_path / "run" / rec["outputs"]["metrics"]["path"]).read_text())
    return summary, tmp_path / "run" / rec["outputs"]["model"]["path"]


def _reload_and_generate(folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("3+4=", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_zero2_sft_two_processes_via_plinth_run(tmp_path):
    summary, folder = _run_ds(tmp_path, "sft", 2)
    assert summary["world_size"] == 2 and summary["deepspeed_zero_stage"] == 2 and summary["global_step"] == 6
    assert summary["loss"] < summary["first_loss"]
    _reload_and_generate(folder)


def test_zero3_kto_two_processes_via_plinth_run(tmp_path):
    summary, folder = _run_ds(tmp_path, "kto", 3)
    assert summary["world_size"] == 2 and summary["deepspeed_zero_stage"] == 3 and summary["global_step"] == 6
    assert "rewards/margins" in summary and "kl" in summary
    _reload_and_generate(folder)  # ZeRO-3 shards were gathered into one ordinary folder


def test_zero1_single_process_runs_in_process(tmp_path):
    """nproc_per_node = 1: no torchrun; the strategy gives the runner's own process a 1-rank world (gloo)."""
    model = tiny_causal_lm(tmp_path / "tiny", hidden_size=32)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(False)[:32]))
    pipe = tmp_path / "p.toml"
    pipe.write_text(PIPELINE.format(component="sft", model=model, data=data, stage=1, extra="", lr=1e-3)
                    .replace("nproc_per_node = 2", "nproc_per_node = 1"))
    exe = Path(sys.executable).parent / "plinth"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run([str(exe), "run", str(pipe), "--run-dir", str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching" not in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "run" / "stages" / "train" / "out" / "metrics.json").read_text())
    assert summary["deepspeed_zero_stage"] == 1 and summary["world_size"] == 1 and summary["global_step"] == 6
