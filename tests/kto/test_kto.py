"""The `kto` trainer on a tiny real model: loss falls and rewards separate, class balance, reference handling,
bad data, and SFT -> KTO chained through artifacts by `plinth run`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from plinth import Artifact
from plinth.testing import make_context
from plinth.lm.training import DatasetError

from plinth_kto import KTOTrainer, auto_weights

FAST = {"max_steps": 16, "learning_rate": 1e-3, "beta": 0.5, "batch_size": 8, "logging_steps": 4,
        "save_steps": 100, "max_length": 64, "lr_scheduler": "constant"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def kto_rows(n_good: int = 60, n_bad: int = 60, seed: int = 0) -> list[dict]:
    """Desirable: the right sum. Undesirable: letters instead of digits (easy to tell apart, so KTO learns fast)."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10) for b in range(10)]
    good = [{"prompt": f"{a}+{b}=", "completion": str(a + b), "label": True} for a, b in rng.sample(pairs, n_good)]
    bad = [{"prompt": f"{a}+{b}=", "completion": rng.choice(["zz", "qq", "xk"]), "label": False}
           for a, b in rng.sample(pairs, n_bad)]
    return good + bad


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def context(tmp_path, model, rows):
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    return make_context(tmp_path / "run", stage="kto",
                        inputs={"dataset": Artifact("dataset", data), "model": Artifact("model", model)})


@pytest.mark.parametrize("reference", ["copy", "precompute"])
def test_kto_loss_falls_and_rewards_separate(tmp_path, tiny_model, reference):
    ctx = context(tmp_path, tiny_model, kto_rows())
    out = KTOTrainer({**FAST, "reference": reference}).train(ctx)
    logged = [m for m in metrics(ctx.run_dir) if "loss" in m]
    assert len(logged) == 4
    for key in ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "learning_rate", "steps_per_second"):
        assert key in logged[-1], key
    assert logged[-1]["loss"] < logged[0]["loss"] - 0.05
    assert logged[-1]["rewards/margins"] > logged[0]["rewards/margins"] > -1
    assert logged[-1]["rewards/chosen"] > logged[-1]["rewards/rejected"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out["model"].path)
    tok = AutoTokenizer.from_pretrained(out["model"].path)
    ids = tok("1+2=", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] >= ids["input_ids"].shape[1]


def test_auto_weights_follow_the_papers_rule():
    assert auto_weights(100, 100)[:2] == (1.0, 1.0)
    assert auto_weights(120, 100)[:2] == (1.0, 1.0)  # 1.2 already in [1, 4/3]
    d, u, why = auto_weights(10, 100)  # 1:10 -> lambda_D = 10 (the KTO paper's example)
    assert (d, u) == (10.0, 1.0) and "[1, 4/3]" in why
    d, u, _ = auto_weights(300, 100)  # too many desirable -> down-weight them to a 4/3 ratio
    assert d * 300 / (u * 100) == pytest.approx(4 / 3)
    d, u, _ = auto_weights(10, 100, undesirable_weight=2.0)
    assert d * 10 / (u * 100) == pytest.approx(1.0) and u == 2.0


def test_auto_weights_explanation_states_both_weights_and_the_rule():
    d, u, why = auto_weights(10, 100, undesirable_weight=2.0)
    assert (d, u) == (20.0, 2.0)
    assert "λ_D = desirable_weight = 20," in why and "λ_U = undesirable_weight = 2;" in why
    assert "λ_D·n_D / (λ_U·n_U) = 20·10 / (2·100) = 1," in why and "[1, 4/3]" in why


def test_auto_weights_count_the_rows_left_after_overlong_ones_are_dropped(tmp_path, tiny_model):
    """24 desirable rows of which 12 are too long, 48 undesirable: with overlong = "drop" training sees 12 vs 48,
    so λ_D = 4 (counting before the drop would give 24 vs 48 and λ_D = 2)."""
    rows = kto_rows(n_good=24, n_bad=48)
    for r in rows[:12]:
        r["completion"] = "9" * 200  # > max_length=64 tokens with the character tokenizer
    ctx = context(tmp_path, tiny_model, rows)
    prep = KTOTrainer({**FAST, "max_steps": -1, "epochs": 1, "desirable_weight": "auto",
                       "overlong": "drop"}).prepare(ctx)
    assert prep["report"]["data/dropped"] == 12
    assert (prep["report"]["data/desirable"], prep["report"]["data/undesirable"]) == (12, 48)
    assert (prep["lam_d"], prep["lam_u"]) == (4.0, 1.0)
    assert sum(r["label"] for r in prep["rows"]) == 12 and len(prep["rows"]) == 60


def test_auto_weights_are_applied_and_reported(tmp_path, tiny_model, caplog):
    ctx = context(tmp_path, tiny_model, kto_rows(n_good=12, n_bad=48))
    with caplog.at_level("WARNING", logger="plinth.kto"):  # one epoch: every row is trained on and counted
        out = KTOTrainer({**FAST, "max_steps": -1, "epochs": 1, "desirable_weight": "auto"}).train(ctx)
    assert "λ_D = desirable_weight = 4," in caplog.text
    summary = json.loads(out["metrics"].path.read_text())
    assert summary["desirable_weight"] == 4.0 and summary["undesirable_weight"] == 1.0
    assert "balance rule" in summary["weights_reason"]


class RecordingHook:
    """The built-in hooks plus a record of every progress event (description, done, total, status)."""

    def __init__(self, inner):
        self.inner, self.events = inner, []

    def plinth_progress(self, **kw):
        self.events.append((kw["description"], kw["done"], kw["total"], kw["status"]))

    def plinth_metrics_logged(self, **kw):
        self.inner.plinth_metrics_logged(**kw)


def test_reference_log_probs_only_for_the_rows_training_reads(tmp_path, tiny_model):
    """2 steps x batch 8 read 16 of 120 rows: the reference pass covers those 16 (2 batches), shown as plinth
    progress (not trl's tqdm bar), and the class weights are counted on them."""
    ctx = context(tmp_path, tiny_model, kto_rows())
    ctx.hook = RecordingHook(ctx.hook)
    out = KTOTrainer({**FAST, "max_steps": 2, "reference": "precompute", "desirable_weight": "auto"}).train(ctx)
    summary = json.loads(out["metrics"].path.read_text())
    assert summary["data/rows_in_file"] == 120 and summary["data/examples"] == 16
    assert summary["data/desirable"] + summary["data/undesirable"] == 16
    ref = [e for e in ctx.hook.events if e[0] == "reference log-probs"]
    assert ref[0] == ("reference log-probs", 0, 2, "start") and ref[-1][1:] == (2, 2, "end")
    assert [e for e in ctx.hook.events if e[0] == "train"][-1][1:] == (2, 2, "end")


def test_unbalanced_manual_weights_warn(tmp_path, tiny_model, caplog):
    ctx = context(tmp_path, tiny_model, kto_rows(n_good=12, n_bad=48))
    with caplog.at_level("WARNING", logger="plinth.kto"):
        KTOTrainer({**FAST, "max_steps": 1}).train(ctx)
    assert "outside [1, 4/3]" in caplog.text


@pytest.mark.parametrize(
    "rows, message",
    [
        (kto_rows(4, 0), r"no undesirable \(label false\) examples among 4 rows"),
        (kto_rows(0, 4), r"no desirable \(label true\) examples"),
        (kto_rows(2, 2) + [{"prompt": "a", "completion": "b", "label": "yes"}], r"row 5: field `label` must be true or false, got 'yes'"),
        (kto_rows(2, 2) + [{"prompt": "a", "completion": "b", "label": 1}], r"row 5: field `label` must be true or false"),
        (kto_rows(2, 2) + [{"prompt": "a", "label": True}], r"row 5: missing field `completion`"),
        (kto_rows(2, 2) + [{"prompt": "", "completion": "b", "label": True}], r"row 5: field `prompt` is empty"),
    ],
)
def test_bad_kto_data_fails_before_training(tmp_path, tiny_model, rows, message):
    ctx = context(tmp_path, tiny_model, rows)
    with pytest.raises(DatasetError, match=message) as err:
        KTOTrainer(FAST).train(ctx)
    assert "kto.jsonl" in str(err.value)
    assert not any(ctx.output_dir.iterdir())


class Crash(RuntimeError):
    pass


class CrashingKTO(KTOTrainer):
    """Dies at step 7, after the checkpoint of step 6, like a killed process."""

    def callbacks(self, ctx):
        from transformers import TrainerCallback

        class Die(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == 7:
                    raise Crash("killed at step 7")

        return super().callbacks(ctx) + [Die()]


def test_train_loss_after_a_resume_is_the_mean_over_the_whole_run(tmp_path, tiny_model):
    cfg = {**FAST, "max_steps": 9, "save_steps": 3, "logging_steps": 4}
    want = json.loads(KTOTrainer(cfg).train(context(tmp_path / "a", tiny_model, kto_rows()))["metrics"]
                      .path.read_text())["train_loss"]
    ctx = context(tmp_path / "b", tiny_model, kto_rows())
    with pytest.raises(Crash):
        CrashingKTO(cfg).train(ctx)
    got = json.loads(KTOTrainer(cfg).train(ctx)["metrics"].path.read_text())
    assert any(m.get("resumed_from_step") == 6 for m in metrics(ctx.run_dir))
    assert got["train_loss"] == pytest.approx(want, rel=1e-4)


def test_batch_of_one_is_rejected():
    with pytest.raises(ValidationError, match="batch_size"):
        KTOTrainer({"batch_size": 1})
    with pytest.raises(ValidationError, match="loss_type"):
        KTOTrainer({"loss_type": "dpo"})


PIPELINE = """
[run]
name = "sft-kto-test"

[stages.sft]
slot = "trainer"
component = "sft"
model = "{model}"
max_steps = 8
batch_size = 8
learning_rate = 3e-3
logging_steps = 4
max_length = 64
inputs = {{ dataset = {{ path = "{sft}", kind = "dataset" }} }}

[stages.kto]
slot = "trainer"
component = "kto"
max_steps = 4
batch_size = 8
learning_rate = 1e-3
beta = 0.5
logging_steps = 2
max_length = 64
desirable_weight = "auto"
inputs = {{ dataset = {{ path = "{kto}", kind = "dataset" }}, model = "sft.model" }}
"""


def test_sft_then_kto_chains_through_artifacts(tmp_path, tiny_model):
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": r["prompt"], "completion": r["completion"]}
                                               for r in kto_rows(60, 0)])
    kto = write_jsonl(tmp_path / "kto.jsonl", kto_rows(40, 30))
    pipe = tmp_path / "p.toml"
    pipe.write_text(PIPELINE.format(model=tiny_model, sft=sft, kto=kto))
    exe = Path(sys.executable).parent / "plinth"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PLINTH_PROGRESS": "auto"}
    cmd = [str(exe), "run", str(pipe), "--run-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd + ["--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout + proc.stderr == ""  # --quiet: no stage lines, progress, library bars or warnings
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    stages = manifest["stages"]
    assert stages["sft"]["status"] == stages["kto"]["status"] == "complete"
    kto_in = stages["kto"]["inputs"]["model"]
    assert Path(kto_in["path"]).parts[-4:] == ("stages", "sft", "out", "model") or kto_in["path"].endswith("sft/out/model")
    summary = json.loads((tmp_path / "run" / stages["kto"]["outputs"]["metrics"]["path"]).read_text())
    assert summary["base_model"] == "sft.model" and summary["global_step"] == 4
    logged = metrics(tmp_path / "run")
    assert {m["stage"] for m in logged} == {"sft", "kto"}

    # the display: plinth's lines only, each naming the stage's place in the run; no library bars, no DeepSpeed
    again = subprocess.run(cmd + ["--set", "kto.max_steps=3"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    err = again.stderr
    assert "[plinth] stage 1/2 sft (sft): unchanged, skipped" in err
    assert "[plinth] 2/2 kto: train 3/3 (100%)" in err
    for noise in ("Setting accelerator", "it/s]", "Loading weights", "Writing model shards", "Map", "Tokenizing",
                  "Computing reference", "deprecated"):
        assert noise not in err, noise
    assert "run complete:" in err
    assert any("rewards/margins" in m for m in logged if m["stage"] == "kto")
    from safetensors.torch import load_file

    sft_w = load_file(tmp_path / "run" / stages["sft"]["outputs"]["model"]["path"] / "model.safetensors")
    base_w = load_file(Path(tiny_model) / "model.safetensors")
    kto_w = load_file(tmp_path / "run" / stages["kto"]["outputs"]["model"]["path"] / "model.safetensors")
    k = "model.embed_tokens.weight"
    # KTO moved away from the SFT weights, which differ from the base: it started from the SFT model
    assert (kto_w[k] - sft_w[k]).abs().max() < (kto_w[k] - base_w[k]).abs().max()
