"""Nothing is lost: a re-run whose inputs went bad keeps the good outputs, run directories belong to one pipeline,
Ctrl-C and SIGTERM are recorded as interrupted, --force trains from scratch, atomic writes are durable, and
`plinth join` finds the launch of the current attempt whenever it was written."""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plinth.errors import PlinthError, StageFailedError
from plinth.pipeline import build_plan
from plinth.registry import Registry
from plinth import rundir
from plinth.rundir import load_manifest, write_json_atomic, write_text_atomic
from plinth.runner import Run

PIPE = """
[run]
name = "t"

[stages.train]
slot = "trainer"
component = "summer"
steps = 3
inputs = { dataset = { path = "data.jsonl", kind = "dataset" } }
"""

@pytest.fixture(autouse=True)
def fresh_progress_display(monkeypatch):
    """An in-process Run(echo=False) switches the process-wide progress display off; give later tests it back."""
    from plinth import builtins

    monkeypatch.setattr(builtins, "_display", builtins._ProgressDisplay())



@pytest.fixture
def pm(use_fixture_plugins):
    return use_fixture_plugins("good")


def trace(run_dir):
    path = Path(run_dir) / "trace.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(tmp_path, pm, name="p.toml", text=PIPE, force=None, run_dir="run"):
    path = tmp_path / name
    path.write_text(text)
    plan = build_plan(path, pm, Registry(None), run_dir=tmp_path / run_dir if run_dir else None)
    Run(plan, pm, force=force, echo=False).execute()
    return plan.run_dir


def write_data(tmp_path, values):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"x": v}) + "\n" for v in values))


def test_rerun_with_bad_inputs_keeps_the_good_outputs(tmp_path, pm):
    write_data(tmp_path, [1, 2, 3])
    run_dir = run(tmp_path, pm)
    model = run_dir / "stages/train/out/model.json"
    good = model.read_text()
    (tmp_path / "data.jsonl").write_text("not json\n")  # the input went bad
    with pytest.raises(StageFailedError):
        run(tmp_path, pm)
    assert model.read_text() == good  # the good model is still where it was
    rec = load_manifest(run_dir)["stages"]["train"]
    assert rec["status"] == "failed" and rec["kept"]["status"] == "complete"
    (tmp_path / "data.jsonl").write_text("also bad\n")  # failing twice still keeps it
    with pytest.raises(StageFailedError):
        run(tmp_path, pm)
    assert model.read_text() == good
    write_data(tmp_path, [1, 2, 3])  # the input is repaired: the kept model is current again, nothing retrains
    n = len(trace(run_dir))
    run(tmp_path, pm)
    assert len(trace(run_dir)) == n and model.read_text() == good
    assert load_manifest(run_dir)["stages"]["train"]["status"] == "complete"
    write_data(tmp_path, [5])  # a good new input replaces it, and the old copy is gone
    run(tmp_path, pm)
    assert json.loads(model.read_text())["total"] == 15.0
    assert not (run_dir / "stages/train/out.previous").exists()


def test_two_pipelines_with_one_run_name_are_refused(tmp_path, pm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_data(tmp_path, [1])
    run(tmp_path, pm, name="a.toml", run_dir=None)
    with pytest.raises(PlinthError) as err:
        run(tmp_path, pm, name="b.toml", run_dir=None)
    assert str(tmp_path / "a.toml") in str(err.value) and str(tmp_path / "b.toml") in str(err.value)
    assert load_manifest(tmp_path / "runs/t")["pipeline"] == str(tmp_path / "a.toml")
    run(tmp_path, pm, name="a.toml", run_dir=None)  # its own pipeline still runs there


def test_pipelines_without_a_run_name_get_one_run_directory_each(tmp_path, pm, monkeypatch):
    """Before, every unnamed pipeline defaulted to runs/run, so the second one was refused (or, earlier, mixed)."""
    monkeypatch.chdir(tmp_path)
    write_data(tmp_path, [1])
    unnamed = PIPE.replace('[run]\nname = "t"\n', "")
    assert run(tmp_path, pm, name="first try.toml", text=unnamed, run_dir=None) == tmp_path / "runs/first-try"
    assert run(tmp_path, pm, name="b.toml", text=unnamed, run_dir=None) == tmp_path / "runs/b"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_are_recorded_as_interrupted(tmp_path, use_fixture_plugins, sig, code):
    use_fixture_plugins("good")
    write_data(tmp_path, [1, 2])
    (tmp_path / "p.toml").write_text(PIPE.replace("steps = 3", "steps = 200\nsleep = 0.05"))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "plinth"), "run", "p.toml", "--run-dir", "run", "--quiet"],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    state = tmp_path / "run/stages/train/work/state.json"
    deadline = time.time() + 60
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("plinth: interrupted"), err
    manifest = load_manifest(tmp_path / "run")
    assert manifest["status"] == "interrupted"
    assert manifest["stages"]["train"]["status"] == "interrupted"


def test_force_trains_from_scratch(tmp_path, pm):
    write_data(tmp_path, [1, 2])
    run_dir = run(tmp_path, pm)
    run(tmp_path, pm, force=["train"])
    last = trace(run_dir)[-1]
    assert last["component"] == "summer" and last["resumed_from"] == 0  # not the finished checkpoint re-saved


def test_atomic_writes_use_the_umask_mode_and_fsync_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        write_json_atomic(tmp_path / "b.json", {"a": 1})
        with rundir.open_atomic(tmp_path / "c.bin", "wb") as fh:
            fh.write(b"y")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "c.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert synced.count(True) == 3 and synced.count(False) == 3  # each file, then its folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.bin"]  # no temporary left


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with rundir.open_atomic(tmp_path / "a.txt") as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_replace_folder_never_leaves_nothing_at_the_destination(tmp_path, monkeypatch):
    """save_model_folder used to rmtree the old model and then rename: a kill between the two lost the model."""
    dest, new = tmp_path / "model", tmp_path / ".model.tmp"
    dest.mkdir()
    (dest / "w.safetensors").write_text("old")
    new.mkdir()
    (new / "w.safetensors").write_text("new")
    real_rename, seen = os.rename, []

    def rename(src, dst):
        # at every rename, the old model is at dest or beside it: never deleted before the new one is in place
        seen.append(any((p / "w.safetensors").exists() for p in [dest, *tmp_path.glob(".model.old-*")]))
        if Path(src) == new:
            raise OSError(errno.EIO, "killed mid-rename")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="killed mid-rename"):
        rundir.replace_folder(new, dest)
    assert (dest / "w.safetensors").read_text() == "old" and all(seen)  # put back
    monkeypatch.setattr(os, "rename", real_rename)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    rundir.replace_folder(new, dest)
    assert (dest / "w.safetensors").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # old folder removed after
    assert synced == [False, True]  # the file, then the parent folder


def test_eval_results_are_written_through_the_shared_atomic_helper(tmp_path, monkeypatch):
    """results.py used fixed `.tmp` names (two writers collide) and never fsynced."""
    from plinth_evals.results import write_samples

    (tmp_path / "s.jsonl.tmp").mkdir()  # whatever holds the old fixed name must not matter
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    assert write_samples(tmp_path / "s.jsonl", [{"a": 1}, {"a": 2}]) == 2
    assert (tmp_path / "s.jsonl").read_text().count("\n") == 2 and synced == [False, True]


def _fake_run(run_dir, attempt, started):
    (run_dir / "stages/ar").mkdir(parents=True)
    write_json_atomic(run_dir / "manifest.json",
                      {"stages": {"ar": {"status": "running", "attempts": attempt, "started": started}}})


def test_join_finds_a_launch_written_at_any_time_of_the_current_attempt(tmp_path, monkeypatch):
    from plinth import runner

    _fake_run(tmp_path, attempt=2, started=time.time() - 120)
    write_json_atomic(tmp_path / "stages/ar/launch.json", {"attempt": 2, "written": time.time() - 60, "spec": {}})
    monkeypatch.setattr(runner, "launch_workers", lambda path, node_rank: 7)
    assert runner.join(tmp_path, "ar", node_rank=1, timeout=2) == 7  # a minute-old launch of this attempt


def test_join_refuses_a_stale_launch_of_an_earlier_attempt(tmp_path, monkeypatch):
    from plinth import runner

    _fake_run(tmp_path, attempt=2, started=time.time())
    write_json_atomic(tmp_path / "stages/ar/launch.json", {"attempt": 1, "written": time.time(), "spec": {}})
    monkeypatch.setattr(runner, "launch_workers", lambda path, node_rank: pytest.fail("joined a stale launch"))
    with pytest.raises(PlinthError, match="earlier attempt"):
        runner.join(tmp_path, "ar", node_rank=1, timeout=1)


def test_sigterm_during_a_multi_process_stage_stops_its_workers(tmp_path, use_fixture_plugins):
    use_fixture_plugins("good")
    write_data(tmp_path, [1])
    (tmp_path / "p.toml").write_text(PIPE.replace(
        "steps = 3", 'steps = 400\nsleep = 0.05\nstrategy = { name = "ddp", nproc_per_node = 2 }'))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "plinth"), "run", "p.toml", "--run-dir", "run", "--quiet"],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while len(trace(tmp_path / "run")) < 2 and time.time() < deadline:
        time.sleep(0.1)
    pids = [t["pid"] for t in trace(tmp_path / "run")]
    assert len(pids) == 2, proc.stderr.read() if proc.poll() is not None else "workers did not start"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.time() + 30
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)  # no orphaned worker keeps training
    log = (tmp_path / "run/stages/train/workers.log").read_text()
    assert "SIGTERM" in log  # torchrun was asked to stop its workers, not killed under them
    assert load_manifest(tmp_path / "run")["stages"]["train"]["status"] == "interrupted"
