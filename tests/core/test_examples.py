"""Every pipeline under examples/ validates against the installed plugins (components, parameters, wiring)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path, plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    res = plinth_cmd("validate", str(path), cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "valid —" in res.stdout


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"quickstart.toml", "sft-kto.toml", "merge.toml", "teacher-data.toml"}
