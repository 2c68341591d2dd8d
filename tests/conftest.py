"""Shared test set-up: no hub access ever, and helpers to load the fixture plugin distributions."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PLINTH_PROGRESS", "off")

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def use_fixture_plugins(monkeypatch):
    """Put fixture plugin distributions (real dist-info + entry points) on sys.path and load only them."""
    from plinth import plugins

    def use(*names: str, strict: bool = False):
        for name in names:
            monkeypatch.syspath_prepend(str(FIXTURES / name))
        importlib.invalidate_caches()
        monkeypatch.setenv("PLINTH_PLUGINS", ",".join(f"fixture-{n}" for n in names) or "none")
        extra = [str(FIXTURES / n) for n in names]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(extra + [os.environ.get("PYTHONPATH", "")]).strip(os.pathsep))
        return plugins.load_plugins(strict=strict, refresh=True)

    yield use
    plugins.reset()


def run_plinth(*args: str, cwd: Path | str | None = None, env: dict | None = None, timeout: float = 300):
    """Run the real `plinth` console script in a subprocess."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    exe = Path(sys.executable).parent / "plinth"
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def plinth_cmd():
    """`plinth_cmd("run", "p.toml", cwd=...)` runs the real console script and returns the CompletedProcess."""
    return run_plinth
