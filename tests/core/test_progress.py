"""The progress display (stage, step, ETA) and the JSONL metrics logger, through the real hooks."""

import json

from plinth.plugins import load_plugins
from plinth.testing import make_context


def test_progress_lines_show_stage_step_and_eta(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PLINTH_PROGRESS", "auto")
    ctx = make_context(tmp_path, stage="sft")
    with ctx.progress(4, "steps") as p:
        p.update(1, loss=0.5)  # within 5 s of the start line: throttled
        p.update(3, loss=0.25)  # the last step always prints
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[plinth] sft: steps 0/4 (0%)")
    assert any("steps 4/4 (100%)" in line and "loss=0.25" in line for line in err)
    assert not any("steps 1/4" in line for line in err)


def test_eta_is_extrapolated_from_elapsed_time():
    from plinth.builtins import _ProgressDisplay

    d = _ProgressDisplay()
    d.started[("s", "steps")] = 100.0
    line = d.line(("s", "steps"), done=25, total=100, now=110.0, status="update", info={})
    assert "25/100 (25%) ETA 0:00:30 elapsed 0:00:10" in line


def test_metrics_logger_appends_jsonl(tmp_path):
    load_plugins(refresh=True)
    ctx = make_context(tmp_path, stage="kto")
    ctx.log_metrics({"loss": 0.7, "rewards/chosen": 0.1}, step=3)
    ctx.log_metrics({"loss": 0.6}, step=4)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["stage"] == "kto" and rows[0]["step"] == 3 and rows[0]["rewards/chosen"] == 0.1
    assert rows[1]["loss"] == 0.6


def test_lines_name_the_stage_position_and_the_final_count_prints_once(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from plinth import builtins

    monkeypatch.setenv("PLINTH_PROGRESS", "auto")
    monkeypatch.setenv("PLINTH_LIBRARY_BARS", "1")  # leave this test process's library switches alone
    stages = [SimpleNamespace(id=i) for i in ("data", "sft", "eval")]
    builtins.plinth_run_started(run=SimpleNamespace(plan=SimpleNamespace(stages=stages), echo=True))
    ctx = make_context(tmp_path, stage="sft")
    with ctx.progress(2, "train") as p:
        p.update(2)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[plinth] 2/3 sft: train 0/2 (0%)")
    assert [line for line in err if "2/2 (100%)" in line] == [err[-1]]  # "end" does not repeat the last count
    builtins.plinth_run_started(run=SimpleNamespace(plan=SimpleNamespace(stages=stages), echo=False))  # --quiet
    with ctx.progress(2, "train") as p:
        p.update(2)
    assert capsys.readouterr().err == ""
    builtins._display.enabled, builtins._display.position = True, {}
