"""docs/writing-plugins.md works as written: starting from an empty folder, write the page's files and run the
commands of its `<!-- run -->` blocks in order — the tutorial trainer selected through registry.toml, then the
evaluator and merger of the slot sections in a pipeline of their own."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "writing-plugins.md"


def page_files(doc: Path) -> dict[str, str]:
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", doc.read_text(), re.S))


def extract(doc: Path, dest: Path) -> dict[str, str]:
    files = page_files(doc)
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def commands(doc: Path) -> list[str]:
    """The shell lines of the page's `<!-- run -->` blocks, in page order, without their comments."""
    blocks = re.findall(r"<!-- run -->\n```bash\n(.*?)```", doc.read_text(), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def code_lines(text: str) -> int:
    """Lines of Python that are not blank, comments or docstrings (the count the page states)."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith(("#", '"""')))


class Reader:
    """Runs the page's commands in one folder, like a reader's shell. `plinth install -e DIR` becomes a
    `pip install --target` beside it, put on PYTHONPATH, so the test leaves plinth's environment as it was."""

    def __init__(self, root: Path):
        self.root, self.sites = root, []
        self.results: dict[str, subprocess.CompletedProcess] = {}

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(self.sites + [os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
        return dict(os.environ, PYTHONPATH=path, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def run(self, line: str) -> subprocess.CompletedProcess:
        words = shlex.split(line)
        if words[:3] == ["plinth", "install", "-e"]:
            site = self.root / f".site-{words[3]}"
            res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                  "--target", str(site), str(self.root / words[3])], capture_output=True, text=True)
            self.sites.append(str(site))
        else:
            res = subprocess.run(line, shell=True, cwd=self.root, env=self.env(), capture_output=True, text=True,
                                 timeout=600)
        assert res.returncode == 0, f"$ {line}\n{res.stdout}\n{res.stderr}"
        self.results[line] = res
        return res


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    files = extract(DOC, root)
    reader = Reader(root)
    for line in commands(DOC):
        reader.run(line)
    return root, files, reader


def test_tutorial_states_its_true_size():
    files = page_files(DOC)
    stated = int(re.search(r"— (\d+) lines of Python \(not counting blank lines and docstrings\)", DOC.read_text())[1])
    counted = sum(code_lines(text) for rel, text in files.items() if rel.startswith("plinth-plain/") and rel.endswith(".py"))
    assert counted == stated
    assert stated < 30 and "in under 30 lines" in (REPO / "README.md").read_text()  # the README's promise


def test_tutorial_trainer_installs_is_selected_by_registry_and_trains(page, plinth_cmd):
    root, files, reader = page
    assert "tiny-model" not in files and (root / "tiny-model" / "config.json").exists()  # made by the page's command
    assert 'trainer = "plain"' in (root / "registry.toml").read_text()
    assert "plinth-plain" in reader.results["plinth plugins"].stdout
    run_dir = root / "runs" / "tutorial"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["component"] == "plain"
    assert manifest["stages"]["train"]["distribution"] == "plinth-plain"
    losses = [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and losses[-1] < losses[0]  # 2 epochs of 4 rows, and it really trained
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(run_dir / "stages/train/out/model") is not None
    res = plinth_cmd("validate", "tutorial.toml", "--set", "train.epoch=2", cwd=root, env=reader.env())
    assert res.returncode == 2 and "tutorial.toml: stages.train.epoch: unknown key" in res.stderr


def test_slot_examples_merge_and_evaluate_in_a_pipeline(page):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _, _ = page
    run_dir = root / "runs" / "slots"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s: r["status"] for s, r in manifest["stages"].items()} == {
        "train": "complete", "soup": "complete", "score": "complete"}
    assert manifest["stages"]["soup"]["distribution"] == "plinth-mine"

    # the merger: every tensor is the mean of the two inputs' tensors (read straight from the safetensors files)
    trained = load_file(run_dir / "stages/train/out/model/model.safetensors")
    base = load_file(root / "tiny-model/model.safetensors")
    soup = load_file(run_dir / "stages/soup/out/model/model.safetensors")
    assert set(soup) == set(base) and any(not torch.equal(trained[k], base[k]) for k in base)
    for k in base:
        torch.testing.assert_close(soup[k], (trained[k] + base[k]) / 2)

    # the evaluator: plinth.metrics/v1 with the mean loss, recomputed here by plain transformers
    doc = json.loads((run_dir / "stages/score/out/metrics.json").read_text())
    assert doc["schema"] == "plinth.metrics/v1" and doc["baseline"] == "base"
    assert set(doc["models"]) == {"base", "train.model", "soup"}
    rows = [json.loads(line)["text"] for line in (root / "data.jsonl").read_text().splitlines()]
    model = AutoModelForCausalLM.from_pretrained(root / "tiny-model")
    tok = AutoTokenizer.from_pretrained(root / "tiny-model")
    with torch.no_grad():
        expected = [model(**(enc := tok(t, return_tensors="pt")), labels=enc["input_ids"]).loss.item() for t in rows]
    got = doc["models"]["base"]["metrics"]["texts/loss"]
    assert got["value"] == pytest.approx(sum(expected) / len(expected), rel=1e-5) and got["n"] == 4
    assert got["ci_low"] <= got["value"] <= got["ci_high"]
    samples = (run_dir / "stages/score/out" / doc["models"]["soup"]["samples"]).read_text().splitlines()
    assert len(samples) == 4 and "loss" in json.loads(samples[0])
    # and the report reads it: one row per model, the metric as a column
    report = (run_dir / "report" / "report.md").read_text()
    assert "texts/loss" in report and all(label in report for label in ("base", "train.model", "soup"))
