"""Runs: manifest, skipping unchanged stages, failures, locking, kill -9 and resume, rounds, multi-process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plinth.errors import RunLockedError, StageFailedError
from plinth.pipeline import build_plan
from plinth.registry import Registry
from plinth.rundir import RunLock, load_manifest
from plinth.runner import Run


PIPE = """
[run]
name = "t"

[stages.data]
slot = "generator"
component = "numbers"
n = 4

[stages.train]
slot = "trainer"
component = "summer"
steps = 3
inputs = { dataset = "data.dataset" }

[stages.eval]
slot = "evaluator"
component = "score"
inputs = { models = ["train.checkpoint"] }
"""


def trace(run_dir):
    path = Path(run_dir) / "trace.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(tmp_path, pm, text=PIPE, overrides=None, force=None):
    path = tmp_path / "p.toml"
    path.write_text(text)
    plan = build_plan(path, pm, Registry(None), overrides=overrides, run_dir=tmp_path / "run")
    Run(plan, pm, force=force, echo=False).execute()
    return plan.run_dir


@pytest.fixture
def pm(use_fixture_plugins):
    return use_fixture_plugins("good")


def test_run_writes_manifest_metrics_and_artifacts(tmp_path, pm):
    run_dir = run(tmp_path, pm)
    manifest = load_manifest(run_dir)
    assert manifest["status"] == "complete"
    assert [s for s in manifest["stages"]] == ["data", "train", "eval"]
    train = manifest["stages"]["train"]
    assert train["status"] == "complete" and train["component"] == "summer" and train["version"] == "0.3.0"
    assert train["outputs"]["checkpoint"]["path"] == "stages/train/out/model.json"
    assert len(train["outputs"]["checkpoint"]["meta"]["hash"]) == 64
    assert json.loads((run_dir / "stages/eval/out/metrics.json").read_text()) == {"train": 18.0}
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and metrics[0]["stage"] == "train"
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [(e["stage"], e["status"]) for e in events] == [("data", "complete"), ("train", "complete"), ("eval", "complete")]
    assert (run_dir / "resolved.json").exists() and (run_dir / "pipeline.toml").read_text() == PIPE


def test_rerun_skips_unchanged_and_reruns_what_changed(tmp_path, pm):
    run_dir = run(tmp_path, pm)
    run(tmp_path, pm)
    assert [t["component"] for t in trace(run_dir)] == ["numbers", "summer", "score"]  # nothing ran again
    run(tmp_path, pm, overrides=["train.scale=2"])  # train changes -> eval's input changes too
    assert [t["component"] for t in trace(run_dir)][3:] == ["summer", "score"]
    assert json.loads((run_dir / "stages/eval/out/metrics.json").read_text()) == {"train": 36.0}
    run(tmp_path, pm, overrides=["train.scale=2"], force=["data"])  # same data content -> downstream skipped
    assert [t["component"] for t in trace(run_dir)][5:] == ["numbers"]


def test_failed_stage_is_recorded_and_earlier_work_kept(tmp_path, pm):
    with pytest.raises(StageFailedError, match="planned failure at step 2"):
        run(tmp_path, pm, overrides=["train.fail_at_step=2"])
    manifest = load_manifest(tmp_path / "run")
    assert manifest["status"] == "failed"
    assert manifest["stages"]["data"]["status"] == "complete"
    assert manifest["stages"]["train"]["status"] == "failed"
    assert "planned failure" in manifest["stages"]["train"]["error"]
    assert "eval" not in manifest["stages"]


def test_two_runs_cannot_share_a_run_directory(tmp_path, pm):
    (tmp_path / "run").mkdir()
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match=f"in use by pid {os.getpid()}"):
            run(tmp_path, pm)


def test_kill_9_mid_stage_then_resume(tmp_path, use_fixture_plugins, plinth_cmd):
    use_fixture_plugins("good")
    (tmp_path / "p.toml").write_text(PIPE.replace("steps = 3", "steps = 12\nsleep = 0.25"))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "plinth"), "run", "p.toml", "--run-dir", "run", "--quiet"],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "run/stages/train/work/state.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["step"] >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = load_manifest(tmp_path / "run")
    assert manifest["stages"]["train"]["status"] == "running"  # a killed stage never looks complete
    killed_at = json.loads(state.read_text())["step"]
    assert 4 <= killed_at < 12

    res = plinth_cmd("run", "p.toml", "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "data (numbers): unchanged, skipped" in res.stderr and "(resuming)" in res.stderr
    runs = [t for t in trace(tmp_path / "run")]
    assert [t["component"] for t in runs] == ["numbers", "summer", "summer", "score"]
    assert runs[2]["resumed_from"] == killed_at  # continued at the right step, not from scratch
    result = json.loads((tmp_path / "run/stages/train/out/model.json").read_text())
    assert result["total"] == 12 * sum(range(4))  # identical to an uninterrupted run
    manifest = load_manifest(tmp_path / "run")
    assert manifest["stages"]["train"]["attempts"] == 2 and manifest["status"] == "complete"
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {m["attempt"] for m in metrics} == {1, 2}  # both attempts' lines kept, told apart
    assert [m["step"] for m in metrics if m["attempt"] == 2] == list(range(killed_at + 1, 13))


def test_changed_stage_does_not_resume_from_stale_checkpoints(tmp_path, pm):
    with pytest.raises(StageFailedError):
        run(tmp_path, pm, overrides=["train.fail_at_step=3"])
    run(tmp_path, pm, overrides=["train.scale=3"])  # a different config: start the stage over
    assert trace(tmp_path / "run")[-2]["resumed_from"] == 0


def test_repeat_rounds_run_end_to_end(tmp_path, pm):
    text = PIPE + '\n[repeat]\nstages = ["data", "train"]\nrounds = 2\n'
    run_dir = run(tmp_path, pm, text)
    assert list(load_manifest(run_dir)["stages"]) == ["data@1", "train@1", "data@2", "train@2", "eval"]
    assert json.loads((run_dir / "stages/eval/out/metrics.json").read_text()) == {"train@2": 18.0}


def test_multi_process_stage_through_torchrun(tmp_path, use_fixture_plugins, plinth_cmd):
    use_fixture_plugins("good")
    (tmp_path / "p.toml").write_text(
        '[stages.ar]\nslot = "trainer"\ncomponent = "allreduce"\nvalue = 2.0\n'
        'strategy = { name = "ddp", nproc_per_node = 2 }\n'
    )
    res = plinth_cmd("run", "p.toml", "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ranks = {t["rank"]: t for t in trace(tmp_path / "run")}
    assert set(ranks) == {0, 1} and ranks[0]["pid"] != ranks[1]["pid"]
    assert ranks[0]["total"] == ranks[1]["total"] == 2.0 * 1 + 2.0 * 2  # a real all_reduce over gloo
    assert json.loads((tmp_path / "run/stages/ar/out/sum.json").read_text()) == {"total": 6.0, "world_size": 2}
    # --set reaches into the strategy table, and a failing worker fails the stage with its log
    res = plinth_cmd("run", "p.toml", "--run-dir", "run2", "--set", "ar.strategy.nproc_per_node=1", cwd=tmp_path)
    assert res.returncode == 1 and "allreduce" in res.stderr


def test_two_node_stage_with_plinth_join(tmp_path, use_fixture_plugins, plinth_cmd):
    """Two 'nodes' on one machine: `plinth run` is node 0, `plinth join` is node 1; one all_reduce spans both."""
    import socket

    use_fixture_plugins("good")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "p.toml").write_text(
        '[stages.ar]\nslot = "trainer"\ncomponent = "allreduce"\nvalue = 1.0\n'
        f'strategy = {{ name = "ddp", nproc_per_node = 1, nnodes = 2, master_port = {port} }}\n'
    )
    plinth = str(Path(sys.executable).parent / "plinth")
    joiner = subprocess.Popen([plinth, "join", str(tmp_path / "run"), "ar", "--node-rank", "1", "--timeout", "120"],
                              cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    res = plinth_cmd("run", "p.toml", "--run-dir", "run", cwd=tmp_path)
    assert joiner.wait(timeout=120) == 0, joiner.stdout.read()
    assert res.returncode == 0, res.stderr
    ranks = {t["rank"]: t for t in trace(tmp_path / "run")}
    assert set(ranks) == {0, 1} and ranks[0]["world_size"] == 2 and ranks[0]["total"] == 3.0
