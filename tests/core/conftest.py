"""Fixtures shared by the core's validation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

#: a two-stage pipeline over the `good` fixture plugins (its trainer comes from the registry default)
FIXTURE_PIPELINE = (Path(__file__).parents[1] / "fixtures" / "pipelines" / "good.toml").read_text()


@pytest.fixture
def fixture_pipeline() -> str:
    return FIXTURE_PIPELINE


@pytest.fixture
def plugins(monkeypatch):
    """Every installed plugin (the shipped ones), as `plinth validate` loads them."""
    from plinth import plugins as P

    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    yield P.load_plugins(refresh=True)
    P.reset()
