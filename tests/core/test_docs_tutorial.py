"""docs/writing-plugins.md works as written: extract its files, install the plugin, select it via registry.toml."""

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "writing-plugins.md"


def extract(doc: Path, dest: Path) -> dict[str, str]:
    files = dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", doc.read_text(), re.S))
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def test_tutorial_plugin_installs_and_is_selected_by_registry(tmp_path, plinth_cmd):
    from plinth.lm.testing import tiny_causal_lm

    files = extract(DOC, tmp_path)
    python_lines = sum(
        1 for rel, text in files.items() if rel.endswith(".py")
        for line in text.splitlines() if line.strip() and not line.strip().startswith(("#", '"""'))
    )
    assert python_lines <= 30, python_lines  # the tutorial's promise
    tiny_causal_lm(tmp_path / "tiny-model")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"text": "1+1=2"}) + "\n" for _ in range(4)))
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(tmp_path / "plinth-plain")], capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(site), "PLINTH_PLUGINS": "plain"}
    (tmp_path / "registry.toml").write_text("# mine\n[defaults]\ntrainer = \"sft\"\n")
    res = plinth_cmd("registry", "set", "trainer=plain", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    res = plinth_cmd("run", "tutorial.toml", "--run-dir", "run", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["component"] == "plain"
    assert manifest["stages"]["train"]["distribution"] == "plinth-plain"
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and losses[-1] < losses[0]  # it really trained
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run/stages/train/out/model") is not None
    res = plinth_cmd("validate", "tutorial.toml", "--set", "train.epoch=2", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "tutorial.toml: stages.train.epoch: unknown key" in res.stderr
