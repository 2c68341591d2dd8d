"""The `sft` trainer on a tiny real model: loss falls, outputs reload and generate, LoRA, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plinth import Artifact, ConfigError
from plinth.lm.hf import ModelNotFoundError
from plinth.testing import make_context
from plinth.lm.training import DatasetError

from plinth_sft import SFTTrainer

FAST = {"max_steps": 12, "learning_rate": 3e-3, "batch_size": 8, "logging_steps": 3, "save_steps": 100,
        "max_length": 64, "lr_scheduler": "constant"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sum_rows() -> list[dict]:
    return [{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a in range(10) for b in range(10)]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def context(tmp_path, model, rows, stage="sft"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(tmp_path / f"{stage}.jsonl", rows)
    return make_context(tmp_path / "run", stage=stage,
                        inputs={"dataset": Artifact("dataset", data), "model": Artifact("model", model)})


def generate(folder: Path, prompt: str = "1+2=") -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_sft_loss_falls_and_output_reloads(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, sum_rows())
    out = SFTTrainer(FAST).train(ctx)
    assert set(out) == {"model", "metrics"}
    folder = out["model"].path
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    assert (folder / "chat_template.jinja").exists() or "chat_template" in (folder / "tokenizer_config.json").read_text()
    logged = [m for m in metrics(ctx.run_dir) if "loss" in m]
    assert len(logged) == 4 and all("learning_rate" in m and "steps_per_second" in m for m in logged)
    assert logged[-1]["loss"] < 0.7 * logged[0]["loss"]
    summary = json.loads(out["metrics"].path.read_text())
    assert summary["global_step"] == 12 and summary["data/examples"] == 100 and summary["base_model"] == "tiny"
    import torch

    # precision "auto": bf16 mixed precision on GPUs that have it, fp32 on the CPU
    want = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if torch.cuda.is_available() else "fp32"
    assert summary["precision"] == want and summary["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
    text = generate(folder)
    assert isinstance(text, str)  # loads with plain transformers and generates


def test_sft_messages_format(tmp_path, tiny_model):
    rows = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
            for r in sum_rows()[:32]]
    ctx = context(tmp_path, tiny_model, rows)
    out = SFTTrainer({**FAST, "max_steps": 3}).train(ctx)
    assert json.loads(out["metrics"].path.read_text())["data/format"] == "messages"


def test_sft_evaluates_on_eval_dataset(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, sum_rows()[:80])
    ctx.inputs["eval_dataset"] = Artifact("dataset", write_jsonl(tmp_path / "eval.jsonl", sum_rows()[80:]))
    SFTTrainer({**FAST, "max_steps": 4, "eval_steps": 2}).train(ctx)
    evals = [m for m in metrics(ctx.run_dir) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [2, 4] and evals[-1]["eval_loss"] < evals[0]["eval_loss"]


def test_eval_steps_without_eval_dataset_is_an_error(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, sum_rows()[:8])
    with pytest.raises(ConfigError, match="no `eval_dataset` input"):
        SFTTrainer({**FAST, "eval_steps": 2}).train(ctx)


def test_sft_lora_merges_on_save(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    ctx = context(tmp_path, tiny_model, sum_rows())
    cfg = {**FAST, "max_steps": 4, "finetune": "lora",
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}
    out = SFTTrainer(cfg).train(ctx)
    folder = out["model"].path
    assert not (folder / "adapter_config.json").exists()
    merged, base = load_file(folder / "model.safetensors"), load_file(tiny_model / "model.safetensors")
    assert set(merged) == set(base)  # a plain model: no lora_A/lora_B tensors
    changed = [k for k in base if not torch.equal(merged[k], base[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    generate(folder)


def test_sft_lora_unmerged_saves_adapter(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, sum_rows())
    cfg = {**FAST, "max_steps": 2, "finetune": "lora", "lora": {"r": 2, "merge_on_save": False}}
    out = SFTTrainer(cfg).train(ctx)
    assert (out["model"].path / "adapter_config.json").exists() and out["model"].meta["adapter"] is True


class Crash(RuntimeError):
    pass


class CrashingSFT(SFTTrainer):
    """Dies at step `crash_at` (after the checkpoint of an earlier step), like a killed process."""

    crash_at = 7

    def callbacks(self, ctx):
        from transformers import TrainerCallback

        at = self.crash_at

        class Die(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == at:
                    raise Crash(f"killed at step {at}")

        return super().callbacks(ctx) + [Die()]


def test_sft_resumes_from_last_checkpoint_at_the_right_step(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    cfg = {**FAST, "max_steps": 10, "save_steps": 3, "logging_steps": 1}
    straight = context(tmp_path / "a", tiny_model, sum_rows())
    SFTTrainer(cfg).train(straight)

    ctx = context(tmp_path / "b", tiny_model, sum_rows())
    with pytest.raises(Crash):
        CrashingSFT(cfg).train(ctx)
    assert not (ctx.output_dir / "model").exists()
    assert sorted(p.name for p in (ctx.work_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    SFTTrainer(cfg).train(ctx)
    logged = metrics(ctx.run_dir)
    assert any(m.get("resumed_from_step") == 6 for m in logged)
    resumed_losses = [m["step"] for m in logged if "loss" in m]
    assert resumed_losses[-4:] == [7, 8, 9, 10]  # continued at step 7, not from scratch
    assert json.loads((ctx.output_dir / "metrics.json").read_text())["global_step"] == 10
    a = load_file(straight.output_dir / "model" / "model.safetensors")
    b = load_file(ctx.output_dir / "model" / "model.safetensors")
    for k in a:  # same data order, optimizer and scheduler state: the resumed run matches the straight one
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_train_loss_after_a_resume_is_the_mean_over_the_whole_run(tmp_path, tiny_model):
    """Killed at step 7 (checkpoints at 3 and 6, logs every 4: the checkpoint falls mid-interval), resumed: the
    reported train_loss is the mean of all 10 steps, as in the uninterrupted run — not of steps 7..10."""
    cfg = {**FAST, "max_steps": 10, "save_steps": 3, "logging_steps": 4}
    straight = context(tmp_path / "a", tiny_model, sum_rows())
    want = json.loads(SFTTrainer(cfg).train(straight)["metrics"].path.read_text())["train_loss"]

    ctx = context(tmp_path / "b", tiny_model, sum_rows())
    with pytest.raises(Crash):
        CrashingSFT(cfg).train(ctx)
    got = json.loads(SFTTrainer(cfg).train(ctx)["metrics"].path.read_text())
    assert any(m.get("resumed_from_step") == 6 for m in metrics(ctx.run_dir))
    assert got["train_loss"] == pytest.approx(want, rel=1e-4)


def test_finished_checkpoint_is_saved_without_extra_steps(tmp_path, tiny_model):
    cfg = {**FAST, "max_steps": 4, "save_steps": 2}
    ctx = context(tmp_path, tiny_model, sum_rows())
    first = json.loads(SFTTrainer(cfg).train(ctx)["metrics"].path.read_text())
    (ctx.output_dir / "model").rename(tmp_path / "first")  # as if the attempt died while saving
    out = SFTTrainer(cfg).train(ctx)
    again = json.loads(out["metrics"].path.read_text())
    assert again["global_step"] == 4
    assert again["train_loss"] == pytest.approx(first["train_loss"], rel=1e-6)  # from the checkpoint's loss sum
    assert (tmp_path / "first" / "model.safetensors").read_bytes() == (out["model"].path / "model.safetensors").read_bytes()


def test_changed_settings_never_resume_stale_checkpoints(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, sum_rows())
    SFTTrainer({**FAST, "max_steps": 4, "save_steps": 2}).train(ctx)
    SFTTrainer({**FAST, "max_steps": 4, "save_steps": 2, "learning_rate": 1e-3}).train(ctx)
    assert not any("resumed_from_step" in m for m in metrics(ctx.run_dir))


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "1+1=", "completion": "2"}, {"prompt": "2+2="}], r"row 2: missing field `completion`"),
        ([{"prompt": "1+1=", "completion": "2"}, {"prompt": " ", "completion": "4"}], r"row 2: field `prompt` is empty"),
        ([{"prompt": "1+1=", "completion": ""}], r"row 1: field `completion` is empty"),
        ([{"question": "1+1=", "answer": "2"}], r"row 1: no known fields"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], r"row 1: field `messages` has no non-empty assistant"),
    ],
)
def test_bad_rows_fail_before_training(tmp_path, tiny_model, rows, message):
    ctx = context(tmp_path, tiny_model, rows)
    with pytest.raises(DatasetError, match=message) as err:
        SFTTrainer(FAST).train(ctx)
    assert "sft.jsonl" in str(err.value)  # names the file
    assert not any(ctx.output_dir.iterdir()) and not (ctx.work_dir / "checkpoints").exists()


def test_broken_json_line_is_named(tmp_path, tiny_model):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": \n')
    ctx = make_context(tmp_path / "run", stage="sft", inputs={"dataset": Artifact("dataset", path),
                                                               "model": Artifact("model", tiny_model)})
    with pytest.raises(DatasetError, match=r"bad.jsonl, line 2: not valid JSON"):
        SFTTrainer(FAST).train(ctx)


def test_missing_model_fails_clearly(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", sum_rows()[:4])
    ctx = make_context(tmp_path / "run", stage="sft", inputs={"dataset": Artifact("dataset", data)})
    with pytest.raises(ModelNotFoundError, match="'/no/such/model'"):
        SFTTrainer({**FAST, "model": "/no/such/model"}).train(ctx)


def test_model_given_twice_is_an_error(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, sum_rows()[:4])
    with pytest.raises(ConfigError, match="keep one"):
        SFTTrainer({**FAST, "model": str(tiny_model)}).train(ctx)


def test_overlong_examples_counted_then_dropped(tmp_path, tiny_model, caplog):
    rows = sum_rows()[:20] + [{"prompt": "x" * 200, "completion": "y"}] * 3
    ctx = context(tmp_path, tiny_model, rows)
    with caplog.at_level("WARNING", logger="plinth.lm.training"):
        out = SFTTrainer({**FAST, "max_steps": 2, "overlong": "drop"}).train(ctx)
    assert "3 of 23 examples are longer than max_length=64" in caplog.text
    summary = json.loads(out["metrics"].path.read_text())
    assert summary["data/overlong"] == 3 and summary["data/dropped"] == 3


def test_all_overlong_dropped_is_an_error(tmp_path, tiny_model):
    ctx = context(tmp_path, tiny_model, [{"prompt": "x" * 200, "completion": "y"}] * 4)
    with pytest.raises(DatasetError, match="every example is longer than max_length=64"):
        SFTTrainer({**FAST, "overlong": "drop"}).train(ctx)


def test_config_rejects_unknown_and_bad_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="learning_rat"):
        SFTTrainer({"learning_rat": 1e-5})
    with pytest.raises(ValidationError, match="finetune"):
        SFTTrainer({"finetune": "qlora-9bit"})
    with pytest.raises(ValidationError, match="report_to"):
        SFTTrainer({"report_to": ["mlflow-x"]})


def test_training_arguments_follow_config(tmp_path):
    import trl

    from plinth.lm.training import build_training_arguments

    cfg = SFTTrainer({"learning_rate": 5e-8, "lr_scheduler": "cosine", "warmup_steps": 10, "epochs": 3,
                      "batch_size": 4, "gradient_accumulation_steps": 250, "max_grad_norm": 1.0,
                      "report_to": ["tensorboard"], "trainer_args": {"logging_first_step": True}}).config
    ctx = make_context(tmp_path, stage="sft")
    args = build_training_arguments(cfg, ctx, trl.SFTConfig, max_length=1024)
    assert args.learning_rate == 5e-8 and args.lr_scheduler_type == "cosine" and args.warmup_steps == 10
    assert args.gradient_accumulation_steps == 250 and args.num_train_epochs == 3
    assert args.report_to == ["tensorboard"] and args.logging_first_step is True
    assert args.output_dir.startswith(str(ctx.work_dir))
    import torch

    if not torch.cuda.is_available():
        assert args.use_cpu and not args.bf16 and not args.fp16


KILL_PIPELINE = """
[run]
name = "kill-test"

[stages.sft]
slot = "trainer"
component = "sft"
model = "{model}"
max_steps = {steps}
batch_size = 4
learning_rate = 1e-3
logging_steps = 10
save_steps = 10
max_length = 64
inputs = {{ dataset = {{ path = "{data}", kind = "dataset" }} }}
"""


def test_plinth_run_killed_mid_training_resumes_from_checkpoint(tmp_path, tiny_model):
    """kill -9 the whole `plinth run` once a checkpoint exists; the re-run continues from it, not from step 0."""
    import os
    import signal
    import subprocess
    import sys
    import time

    steps = 120
    data = write_jsonl(tmp_path / "d.jsonl", sum_rows())
    pipe = tmp_path / "p.toml"
    pipe.write_text(KILL_PIPELINE.format(model=tiny_model, data=data, steps=steps))
    cmd = [str(Path(sys.executable).parent / "plinth"), "run", str(pipe), "--run-dir", str(tmp_path / "run")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    ckpts = tmp_path / "run" / "stages" / "sft" / "work" / "checkpoints"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(ckpts.glob("checkpoint-*"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed; raise `steps`"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert 0 < done < steps
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    logged = metrics(tmp_path / "run")
    resumed = [m["resumed_from_step"] for m in logged if "resumed_from_step" in m]
    assert len(resumed) == 1 and resumed[0] >= done - 10  # the newest complete checkpoint (one may be half-written)
    after = [m["step"] for m in logged if "loss" in m and m["time"] > min(m2["time"] for m2 in logged if "resumed_from_step" in m2)]
    assert after and min(after) > resumed[0]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    summary = json.loads((tmp_path / "run" / manifest["stages"]["sft"]["outputs"]["metrics"]["path"]).read_text())
    assert summary["global_step"] == steps


@pytest.mark.slow
def test_sft_under_builtin_ddp_two_processes(tmp_path, tiny_model):
    """The core's `ddp` strategy: `plinth run` starts 2 gloo processes; the trainer sees world size 2."""
    import os
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "d.jsonl", sum_rows())
    pipe = tmp_path / "p.toml"
    pipe.write_text(KILL_PIPELINE.format(model=tiny_model, data=data, steps=6)
                    + 'strategy = { name = "ddp", nproc_per_node = 2 }\n')
    cmd = [str(Path(sys.executable).parent / "plinth"), "run", str(pipe), "--run-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "stages" / "sft" / "out" / "metrics.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 6
