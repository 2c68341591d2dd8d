"""Helpers for plugin tests: run one component on a hand-made context. Public so plugin authors' tests use the
same tools as plinth's own. Tiny language models for tests live in `plinth.lm.testing`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import Artifact
from .context import StageContext


def make_context(
    tmp_path: str | Path,
    stage: str = "stage",
    inputs: dict[str, Artifact | list[Artifact]] | None = None,
    strategy: Any = None,
) -> StageContext:
    """A StageContext under `tmp_path` with the built-in logger wired, for running one component in a test."""
    from .plugins import load_plugins

    root = Path(tmp_path)
    out, work = root / "stages" / stage / "out", root / "stages" / stage / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if strategy is None:
        from .strategies import Single

        strategy = Single()
    return StageContext(
        run_dir=root, stage=stage, output_dir=out, work_dir=work, inputs=inputs or {}, strategy=strategy,
        hook=load_plugins().hook,
    )
