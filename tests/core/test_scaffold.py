"""`plinth new-plugin`: refuses names that would replace or clash with installed plugins, and registers lazily."""

import importlib
import sys

import pytest

from plinth.errors import PlinthError
from plinth.plugins import PluginInfo, PluginManager
from plinth.scaffold import new_plugin


def test_new_plugin_refuses_the_name_of_an_installed_distribution(tmp_path, plinth_cmd):
    res = plinth_cmd("new-plugin", "sft", "--dir", str(tmp_path))
    assert res.returncode == 2 and "plinth-sft" in res.stderr and "is installed" in res.stderr, res.stderr
    assert not (tmp_path / "plinth-sft").exists()


def test_new_plugin_refuses_a_component_name_taken_in_its_slot(tmp_path):
    with pytest.raises(PlinthError, match="evaluator 'exact-match' is already registered by plinth-evals"):
        new_plugin("exact-match", slot="evaluator", parent=tmp_path)
    assert new_plugin("exact-match", slot="merger", parent=tmp_path).exists()  # another slot is free


def test_scaffold_registers_a_lazy_reference(tmp_path, monkeypatch):
    root = new_plugin("lazy-probe", slot="merger", parent=tmp_path)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    plugin = importlib.import_module("plinth_lazy_probe.plugin")
    pm = PluginManager()
    pm.register_plugin(plugin, PluginInfo("lazy-probe", "plinth-lazy-probe", "0.1.0", "plinth_lazy_probe.plugin"))
    entry = pm.components["merger"]["lazy-probe"]
    assert entry.target == "plinth_lazy_probe.component:LazyProbeMerger"
    assert "plinth_lazy_probe.component" not in sys.modules  # listing plugins imports nothing heavy
    assert pm.get("merger", "lazy-probe").__name__ == "LazyProbeMerger"
