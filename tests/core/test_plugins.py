"""Plugin discovery through real entry-point metadata, and how one bad plugin is contained."""

import json

import pytest

from plinth.errors import PluginError, UnknownComponentError



def test_fixture_plugin_discovered_by_entry_point(use_fixture_plugins):
    pm = use_fixture_plugins("good")
    info = next(p for p in pm.plugins if p.name == "fixture-good")
    assert info.distribution == "plinth_fixture_good" and info.version == "0.3.0"
    assert info.components == {
        "generator": ["numbers"], "trainer": ["allreduce", "summer"], "merger": ["lazy-merge"], "evaluator": ["score"]
    }
    assert "plinth_stage_finished" in info.hooks
    assert pm.get("trainer", "summer").__name__ == "Summer"
    # the core's own components are always there
    assert set(pm.components["strategy"]) >= {"single", "ddp"}


def test_broken_plugin_is_recorded_and_skipped(use_fixture_plugins):
    with pytest.warns(UserWarning, match="fixture-broken"):
        pm = use_fixture_plugins("good", "broken")
    broken = next(p for p in pm.plugins if p.name == "fixture-broken")
    assert "ImportError" in broken.error and "not installed" in broken.error
    assert pm.get("generator", "numbers")  # the good one still works


def test_strict_mode_makes_a_broken_plugin_fatal(use_fixture_plugins):
    with pytest.raises(PluginError, match="fixture-broken.*import failed"):
        use_fixture_plugins("good", "broken", strict=True)


def test_duplicate_names_name_both_distributions(use_fixture_plugins):
    with pytest.warns(UserWarning, match="registered twice"):
        pm = use_fixture_plugins("good", "dup")
    # entry-point order must not pick a winner: the name is unusable, and says why
    with pytest.raises(PluginError) as exc:
        pm.get("generator", "numbers")
    assert "plinth_fixture_good" in str(exc.value) and "plinth_fixture_dup" in str(exc.value)
    assert "generator 'numbers' is registered twice" in str(exc.value)
    assert pm.get("trainer", "summer")  # everything else still works
    with pytest.raises(PluginError, match="registered twice"):
        use_fixture_plugins("good", "dup", strict=True)


def test_registering_a_non_component_is_a_recorded_error(use_fixture_plugins):
    with pytest.warns(UserWarning):
        pm = use_fixture_plugins("badreg")
    bad = next(p for p in pm.plugins if p.name == "fixture-badreg")
    assert "not a subclass of plinth.Trainer" in bad.error
    assert "bogus" not in pm.components["trainer"]


def test_plinth_plugins_filter_and_disable(use_fixture_plugins, monkeypatch):
    monkeypatch.setenv("PLINTH_DISABLE_PLUGINS", "plinth_fixture_dup")  # a distribution name blocks one
    pm = use_fixture_plugins("good", "dup")
    from plinth.plugins import load_plugins

    assert [p.name for p in pm.plugins if p.name.startswith("fixture")] == ["fixture-good"]
    monkeypatch.setenv("PLINTH_PLUGINS", "fixture-dup")  # an entry-point name selects one
    monkeypatch.delenv("PLINTH_DISABLE_PLUGINS")
    pm = load_plugins(refresh=True)
    assert [p.name for p in pm.plugins if p.name.startswith("fixture")] == ["fixture-dup"]


def test_unknown_component_says_did_you_mean(use_fixture_plugins):
    pm = use_fixture_plugins("good")
    with pytest.raises(UnknownComponentError, match="did you mean 'summer'.*Available: allreduce, summer"):
        pm.get("trainer", "sumer")


def test_cli_plugins_json_and_broken_plugin_still_listed(use_fixture_plugins, plinth_cmd):
    use_fixture_plugins("good", "broken")
    res = plinth_cmd("--strict-plugins", "plugins", "--json")
    assert res.returncode == 0, res.stderr  # repair commands work even in strict mode
    data = {p["name"]: p for p in json.loads(res.stdout)["plugins"]}
    assert data["fixture-good"]["components"]["trainer"] == ["allreduce", "summer"]
    assert "import failed" in data["fixture-broken"]["error"]
    # a command that runs work refuses in strict mode
    res = plinth_cmd("--strict-plugins", "registry")
    assert res.returncode == 2 and "fixture-broken" in res.stderr


def test_lazy_references_import_on_first_use(use_fixture_plugins):
    import sys

    pm = use_fixture_plugins("good")
    sys.modules.pop("fixture_good_lazy", None)
    assert "lazy-merge" in pm.components["merger"]
    assert "fixture_good_lazy" not in sys.modules  # listing never imports it
    assert pm.get("merger", "lazy-merge").__name__ == "LazyMerge"
    assert "fixture_good_lazy" in sys.modules
