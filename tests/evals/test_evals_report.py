"""The report: Markdown table with intervals and deltas, a PNG with one bar per (model, metric), an HTML page
that a headless Chromium opens without errors, two-run comparison, the CLI verb and the end-of-run hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from plinth.stats import wilson_interval
from plinth_evals.plugin import plinth_run_finished
from plinth_evals.report import build_report, load_run


def metrics_file(path: Path, task: str, metric: str, values: dict[str, tuple[float, int]], baseline="baseline",
                 higher=True, proportion=True) -> Path:
    models = {}
    for label, (value, n) in values.items():
        if proportion:
            lo, hi = wilson_interval(round(value * n), n)
        else:
            lo, hi = value * 0.95, value * 1.05
        models[label] = {"path": f"/models/{label}", "stage": label, "role": "baseline" if label == baseline else
                         "model", "samples": f"samples/{label}.jsonl", "metrics": {f"{task}/{metric}": {
                             "value": value, "n": n, "ci_low": lo, "ci_high": hi, "ci_method": "wilson",
                             "higher_is_better": higher, "evaluator": "x", "task": task}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": "plinth.metrics/v1", "evaluator": "x", "task": task,
                                "baseline": baseline, "models": models}))
    return path


def make_run(root: Path, shift: float = 0.0) -> Path:
    stages = {}
    files = {
        "eval_gsm": metrics_file(root / "stages/eval_gsm/out/metrics.json", "gsm8k", "exact_match",
                                 {"baseline": (0.20, 400), "sft": (0.30 + shift, 400), "kto": (0.21, 400)}),
        "eval_mmlu": metrics_file(root / "stages/eval_mmlu/out/metrics.json", "mmlu", "accuracy",
                                  {"baseline": (0.40, 200), "sft": (0.45, 200), "kto": (0.50, 200)}),
        "eval_ppl": metrics_file(root / "stages/eval_ppl/out/metrics.json", "wiki", "perplexity",
                                 {"baseline": (20.0, 50), "sft": (15.0, 50)}, higher=False, proportion=False),
    }
    for stage, path in files.items():
        stages[stage] = {"status": "complete", "component": "x", "slot": "evaluator",
                         "outputs": {"metrics": {"kind": "metrics", "path": str(path.relative_to(root)), "meta": {}}}}
    stages["train"] = {"status": "complete", "component": "sft", "slot": "trainer",
                       "outputs": {"model": {"kind": "model", "path": "stages/train/out/model", "meta": {}}}}
    stages["broken"] = {"status": "failed", "outputs": {}}
    (root / "manifest.json").write_text(json.dumps({"stages": stages}))
    return root


def count_bars(png: Path) -> int:
    """Bars = runs of one saturated colour along the pixel row just above the bars' common base (y = 0), where
    neither error bars nor the legend reach."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))[:, :, :3]
    saturated = (img.max(axis=2) - img.min(axis=2)) > 0.25
    base = max(y for y in range(img.shape[0]) if saturated[y].any())
    row = img[base - 3]
    runs, prev, length = 0, None, 0
    for px in row:
        colour = tuple((px * 20).round()) if px.max() - px.min() > 0.25 else None
        if colour is not None and colour == prev:
            length += 1
        else:
            if prev is not None and length >= 3:
                runs += 1
            prev, length = colour, 1
    if prev is not None and length >= 3:
        runs += 1
    return runs


def test_markdown_table_deltas_and_files(tmp_path):
    run = make_run(tmp_path / "run")
    table = load_run(run)
    assert table.models == ["baseline", "sft", "kto"]
    assert table.metrics == ["gsm8k/exact_match", "mmlu/accuracy", "wiki/perplexity"]
    files = build_report(run)
    text = files.markdown.read_text()
    assert text == files.text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0] == "| model | gsm8k/exact_match ↑ | mmlu/accuracy ↑ | wiki/perplexity ↓ |"
    assert lines[1].startswith("| baseline (baseline) | 0.200 [")
    sft = lines[2]
    assert "0.300 [" in sft and "n=400 (+0.100* unpaired)" in sft  # 0.30 vs 0.20 with n=400: significant
    assert "(-5.000* unpaired)" in sft  # perplexity 15 vs 20 with ±5% intervals
    kto = lines[3]
    assert "(+0.010 unpaired)" in kto and kto.endswith("| — |")  # not significant; no perplexity for kto
    assert files.bars == 8
    assert count_bars(files.png) == 8
    html = files.html.read_text()
    assert "(+0.100* unpaired)" in html  # each delta says which interval it is
    assert "data:image/png;base64," in html and "<table" in html and "http" not in html.replace(
        "http-equiv", "")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_html_opens_in_headless_chromium(tmp_path):
    files = build_report(make_run(tmp_path / "run"))
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--user-data-dir=" + str(tmp_path / "profile"), "--dump-dom", files.html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-chart-ok="true"' in dom, "the embedded PNG did not decode"
    assert dom.count("<tr>") == 4  # header + 3 models
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console


def test_compare_two_runs(tmp_path):
    a = make_run(tmp_path / "run_a")
    b = make_run(tmp_path / "run_b", shift=0.2)
    files = build_report(a, compare=b)
    assert files.markdown.parent == a / "report" / "compare-run_b"
    text = files.text
    assert "| sft @run_a |" in text and "| sft @run_b |" in text
    assert "## run_b − run_a" in text
    assert "| sft | gsm8k/exact_match | 0.300 | 0.500 | +0.200* unpaired |" in text
    assert "| kto | mmlu/accuracy | 0.500 | 0.500 | +0.000 unpaired |" in text
    assert count_bars(files.png) == files.bars == 16


def test_cli_report_and_errors(tmp_path):
    run = make_run(tmp_path / "run")
    exe = Path(sys.executable).parent / "plinth"
    proc = subprocess.run([str(exe), "report", str(run), "--out", str(tmp_path / "out"), "--no-chart"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| sft |" in proc.stdout and (tmp_path / "out" / "report.html").exists()
    assert not (tmp_path / "out" / "report.png").exists()
    bad = subprocess.run([str(exe), "report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no manifest.json" in bad.stderr


def test_run_finished_hook_prints_the_table(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    plinth_run_finished(SimpleNamespace(run_dir=run, echo=True), "complete")
    out = capsys.readouterr().out
    assert "| kto |" in out and (run / "report" / "report.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text('{"stages": {}}')
    plinth_run_finished(SimpleNamespace(run_dir=empty, echo=True), "complete")
    assert capsys.readouterr().out == "" and not (empty / "report").exists()


def test_report_says_what_the_items_were_and_their_decontamination(tmp_path):
    """An evaluator that scored a teacher's held-out set records the set's provenance (task_info); the report prints
    it under the table, so a reader sees how many training prompts were removed for matching a held-out one."""
    run = make_run(tmp_path / "run")
    path = run / "stages/eval_gsm/out/metrics.json"
    doc = json.loads(path.read_text())
    doc["task_info"] = {"stage": "data", "rows": 400, "decontamination": {
        "held_out": 400, "training_prompts_checked": 1000, "training_prompts_removed": 7, "rule": "same question text"}}
    path.write_text(json.dumps(doc))
    text = build_report(run, chart=False).text
    assert ("- gsm8k: 400 items from stage data; decontamination: 7 of 1000 training prompts removed for matching "
            "one of them (same question text)") in text.splitlines()


def write_stage(root: Path, stage: str, task: str, metric: str, correct: dict[str, list[float]], baseline: str,
                ids: dict[str, list] | None = None, sample_field: str | None = "correct") -> Path:
    """A stage's metrics.json with Wilson intervals and per-sample files whose mean is each value."""
    out = root / "stages" / stage / "out"
    models = {}
    for label, values in correct.items():
        n, k = len(values), sum(values)
        lo, hi = wilson_interval(k, n)
        item_ids = (ids or {}).get(label, list(range(n)))
        (out / "samples").mkdir(parents=True, exist_ok=True)
        (out / "samples" / f"{label}.jsonl").write_text(
            "".join(json.dumps({"id": i, "correct": bool(v)}) + "\n" for i, v in zip(item_ids, values)))
        m = {"value": k / n, "n": n, "ci_low": lo, "ci_high": hi, "ci_method": "wilson", "higher_is_better": True,
             "evaluator": "exact-match", "task": task}
        if sample_field:
            m["sample_field"] = sample_field
        models[label] = {"path": f"/m/{label}", "stage": label, "role": "baseline" if label == baseline else "model",
                         "samples": f"samples/{label}.jsonl", "metrics": {f"{task}/{metric}": m}}
    (out / "metrics.json").write_text(json.dumps({"schema": "plinth.metrics/v1", "evaluator": "exact-match",
                                                  "task": task, "baseline": baseline, "models": models}))
    return out / "metrics.json"


def write_manifest(root: Path, stages: dict[str, Path]) -> Path:
    (root / "manifest.json").write_text(json.dumps({"stages": {
        s: {"status": "complete", "outputs": {"metrics": {"kind": "metrics", "path": str(p.relative_to(root))}}}
        for s, p in stages.items()}}))
    return root


def test_two_stages_scoring_the_same_task_get_a_column_each_with_their_own_baseline(tmp_path):
    """eval_a: baseline + sft; eval_b (e.g. 4-shot): its own baseline `base4`, sft and kto. Old code named columns
    per cell: kto (new to the table) landed in eval_a's column, and its delta was taken against eval_a's baseline."""
    run = tmp_path / "run"
    a = write_stage(run, "eval_a", "gsm8k", "exact_match",
                    {"baseline": [1.0] * 20 + [0.0] * 80, "sft": [1.0] * 30 + [0.0] * 70}, "baseline")
    b = write_stage(run, "eval_b", "gsm8k", "exact_match",
                    {"base4": [1.0] * 50 + [0.0] * 50, "sft": [1.0] * 60 + [0.0] * 40,
                     "kto": [1.0] * 55 + [0.0] * 45}, "base4")
    table = load_run(write_manifest(run, {"eval_a": a, "eval_b": b}))
    assert table.metrics == ["eval_a:gsm8k/exact_match", "eval_b:gsm8k/exact_match"]
    assert table.get("kto", "eval_a:gsm8k/exact_match") is None
    assert table.get("kto", "eval_b:gsm8k/exact_match").value == 0.55
    assert table.get("base4", "eval_b:gsm8k/exact_match").value == 0.50
    assert table.baseline_of("eval_b:gsm8k/exact_match") == "base4"
    text = build_report(run, chart=False).text
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in text.splitlines() if line.startswith("| ")}
    assert rows["kto"][0] == "—" and rows["kto"][1].startswith("0.550 [") and "(+0.050* paired)" in rows["kto"][1]
    assert "(+0.100* paired)" in rows["sft"][0] and "(+0.100* paired)" in rows["sft"][1]  # vs 0.20 and vs 0.50
    assert rows["base4"][0] == "—" and "(" not in rows["base4"][1]  # base4 is eval_b's baseline: no delta


def test_paired_delta_from_per_sample_files_and_unpaired_fallback(tmp_path):
    """sft = baseline plus 20 of 400 items fixed: unpaired, +0.05 is within noise; paired over the same items it
    is clearly above 0. Misaligned ids or no sample_field fall back to unpaired, and the cell says so."""
    import random

    from plinth.stats import paired_bootstrap_interval
    from plinth_evals.report import delta

    rng = random.Random(0)
    base = [1.0 if rng.random() < 0.5 else 0.0 for _ in range(400)]
    sft = list(base)
    for i in rng.sample([i for i, v in enumerate(base) if v == 0.0], 20):
        sft[i] = 1.0
    run = tmp_path / "run"
    paths = {"eval": write_stage(run, "eval", "gsm8k", "exact_match",
                                 {"baseline": base, "sft": sft, "shuffled": sft}, "baseline",
                                 ids={"shuffled": list(range(1000, 1400))}),
             "eval_old": write_stage(run, "eval_old", "old", "exact_match", {"baseline": base, "sft": sft},
                                     "baseline", sample_field=None)}
    table = load_run(write_manifest(run, paths))
    dl = delta(table.get("sft", "gsm8k/exact_match"), table.get("baseline", "gsm8k/exact_match"))
    assert dl.test == "paired" and (dl.low, dl.high) == paired_bootstrap_interval(sft, base) and dl.low > 0
    text = build_report(run, chart=False).text
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "(+0.050* paired)" in lines["sft"] and "(+0.050 unpaired)" in lines["sft"]  # gsm8k paired, old not
    assert "(+0.050 unpaired)" in lines["shuffled"]  # other item ids: not the same items
    assert "paired = bootstrap over the items both models were scored on" in text


def test_exact_match_run_reports_a_paired_delta(tmp_path, answer42, answer4):
    """End to end: exact-match writes sample_field and samples; the report pairs them."""
    from plinth_evals.exact_match import ExactMatch

    from .conftest import context, model_art, write_jsonl

    rows = [{"question": f"q{i}", "answer": "42" if i % 2 else "4"} for i in range(8)]
    task = write_jsonl(tmp_path / "t.jsonl", rows)
    out = ExactMatch({"task_file": str(task), "max_new_tokens": 4}).evaluate(
        context(tmp_path, [model_art(answer42, label="m42")], baseline=model_art(answer4, label="base")))
    metrics = Path(out["metrics"].path)
    assert json.loads(metrics.read_text())["models"]["m42"]["metrics"]["t/exact_match"]["sample_field"] == "correct"
    text = build_report(write_manifest(tmp_path, {"eval": metrics}), chart=False).text
    assert "(+0.000 paired)" in [line for line in text.splitlines() if line.startswith("| m42 ")][0]


def test_single_measurements_are_never_marked_significant():
    """A peak-memory or wall-time cell is one number (n=1, interval = the value): before, its delta's interval was
    the difference itself, so every such delta got a '*' (e.g. peak RSS -161.5*)."""
    from plinth_evals.report import Cell, delta, delta_text

    sparse, dense = Cell(685.5, 1, 685.5, 685.5, False, "measured"), Cell(847.0, 1, 847.0, 847.0, False, "measured")
    dl = delta(sparse, dense)
    assert dl.value == -161.5 and not dl.significant
    assert delta_text(dl) == "-161.5 one measurement"
    many = delta(Cell(0.9, 200, 0.85, 0.94), Cell(0.5, 200, 0.43, 0.57))
    assert many.significant and many.test == "unpaired"
