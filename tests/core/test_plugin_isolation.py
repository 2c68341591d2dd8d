"""Plugins cannot take the platform down: raising event and command hooks are reported and ignored, a plugin
failing halfway registers nothing, a misspelled hook is reported, and strict mode makes each of these fatal."""

import json
import warnings

import pytest

from plinth import hookimpl
from plinth.errors import PluginError
from plinth.pipeline import build_plan
from plinth.plugins import PluginInfo, PluginManager
from plinth.registry import Registry
from plinth.rundir import load_manifest
from plinth.runner import Run

PIPE = """
[stages.data]
slot = "generator"
component = "numbers"
n = 3

[stages.train]
slot = "trainer"
component = "summer"
steps = 3
inputs = { dataset = "data.dataset" }
"""

@pytest.fixture(autouse=True)
def fresh_progress_display(monkeypatch):
    """An in-process Run(echo=False) switches the process-wide progress display off; give later tests it back."""
    from plinth import builtins

    monkeypatch.setattr(builtins, "_display", builtins._ProgressDisplay())



def test_raising_event_hooks_do_not_stop_a_run(tmp_path, use_fixture_plugins):
    with pytest.warns(UserWarning, match="fixture-rude.*unknown hook 'plinth_stage_finishd'"):
        pm = use_fixture_plugins("good", "rude")
    (tmp_path / "p.toml").write_text(PIPE)
    plan = build_plan(tmp_path / "p.toml", pm, Registry(None), run_dir=tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Run(plan, pm, echo=False).execute() == "complete"
    messages = [str(w.message) for w in caught if "fixture-rude" in str(w.message)]
    # one warning per failing hook, however often it fails (the metrics logger fails at every step)
    assert sorted(m.split(": ")[2].split(" raised")[0] for m in messages) == [
        "hook plinth_metrics_logged", "hook plinth_run_finished", "hook plinth_stage_finished"]
    assert all("ignored, the run goes on" in m for m in messages)
    manifest = load_manifest(tmp_path / "run")
    assert manifest["status"] == "complete" and manifest["stages"]["train"]["status"] == "complete"
    steps = [json.loads(x)["step"] for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the built-in logger still got every line
    events = (tmp_path / "run/events.jsonl").read_text().splitlines()
    assert len(events) == 2  # and the other plugin's stage_finished still ran for both stages
    info = next(p for p in pm.plugins if p.name == "fixture-rude")
    assert "plinth_metrics_logged raised RuntimeError: metrics logger is down" in info.error


def test_a_raising_hook_is_fatal_in_strict_mode():
    class Rude:
        @hookimpl
        def plinth_stage_started(self, run, stage):
            raise RuntimeError("down")

    pm = PluginManager(strict=True)
    pm.register_plugin(Rude(), PluginInfo("rude", "plinth-rude", "1.0", "rude"))
    with pytest.raises(PluginError, match="plugin 'rude' .*plinth_stage_started raised RuntimeError: down"):
        pm.hook.plinth_stage_started(run=None, stage="s")


def test_misspelled_hook_is_reported_and_fatal_in_strict_mode(use_fixture_plugins):
    with pytest.raises(PluginError, match="unknown hook 'plinth_stage_finishd' — did you mean 'plinth_stage_finished'"):
        use_fixture_plugins("rude", strict=True)


def test_broken_command_hook_leaves_the_repair_commands_working(use_fixture_plugins, plinth_cmd):
    with pytest.warns(UserWarning):
        use_fixture_plugins("good", "rude")
    res = plinth_cmd("plugins", "--json")
    assert res.returncode == 0, res.stderr
    assert "fixture-rude" in res.stderr and "plinth_register_commands raised RuntimeError" in res.stderr
    assert "fixture-good" in {p["name"] for p in json.loads(res.stdout)["plugins"]}
    res = plinth_cmd("--help")
    assert res.returncode == 0 and "Traceback" not in res.stderr


def test_a_plugin_failing_halfway_keeps_no_registrations(use_fixture_plugins):
    with pytest.warns(UserWarning, match="fixture-halfway.*evaluator module missing"):
        pm = use_fixture_plugins("good", "halfway")
    assert "half" not in pm.components["trainer"]
    assert pm.get("trainer", "summer")  # the others are untouched
    info = next(p for p in pm.plugins if p.name == "fixture-halfway")
    assert info.components == {}
