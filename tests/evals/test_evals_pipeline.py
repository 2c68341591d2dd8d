"""End to end: `plinth run` on a pipeline of two evaluator stages prints the report when the run finishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import write_jsonl

PIPE = """
[run]
name = "evals-e2e"

[stages.gsm]
slot = "evaluator"
component = "exact-match"
task_file = "{gsm}"
max_new_tokens = 4
inputs = {{ models = [{{ path = "{tuned}", kind = "model", label = "tuned" }}], baseline = {{ path = "{base}", kind = "model", label = "base" }} }}

[stages.mmlu]
slot = "evaluator"
component = "multiple-choice"
task_file = "{mmlu}"
inputs = {{ models = [{{ path = "{tuned}", kind = "model", label = "tuned" }}], baseline = {{ path = "{base}", kind = "model", label = "base" }} }}
"""


def test_plinth_run_prints_report(tmp_path, answer42, picks_b):
    gsm = write_jsonl(tmp_path / "gsm.jsonl", [{"question": "6*7?", "answer": "#### 42"},
                                               {"question": "1+1?", "answer": "#### 2"}])
    mmlu = write_jsonl(tmp_path / "mmlu.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": "B"}])
    (tmp_path / "p.toml").write_text(PIPE.format(gsm=gsm, mmlu=mmlu, tuned=answer42, base=picks_b))
    exe = Path(sys.executable).parent / "plinth"
    proc = subprocess.run([str(exe), "run", "p.toml", "--run-dir", "run"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| model | gsm/exact_match ↑ | mmlu/accuracy ↑ |" in proc.stdout
    assert "| base (baseline) | 0.000 [" in proc.stdout
    assert "| tuned | 0.500 [" in proc.stdout
    run = tmp_path / "run"
    assert (run / "report" / "report.png").exists() and (run / "report" / "report.html").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["gsm"]["outputs"]["samples"]["kind"] == "samples"
