"""What a component sees while it runs: its inputs, where to write, the strategy, and how to report.

`output_dir` is a fresh folder for each attempt and only counts once the stage is marked complete (the last
complete attempt's outputs wait in out.previous/ until then, and come back if the attempt fails);
`work_dir` survives attempts of the same config (checkpoints), which is how a killed trainer resumes mid-stage;
`cache_dir` survives config changes too: only for content-addressed caches (e.g. teacher calls keyed by prompt).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import Artifact

if TYPE_CHECKING:
    from .components import Strategy


@dataclass
class StageContext:
    run_dir: Path
    stage: str
    output_dir: Path
    work_dir: Path
    inputs: dict[str, Artifact | list[Artifact]] = field(default_factory=dict)
    strategy: "Strategy | None" = None
    round: int = 1
    attempt: int = 1  # 2+ when a killed or failed stage is run again (metrics.jsonl keeps every attempt's lines)
    hook: Any = None  # pluggy HookRelay; None in unit tests that build a context by hand
    params: dict[str, Any] = field(default_factory=dict)  # the raw stage parameters, for provenance

    @property
    def cache_dir(self) -> Path:
        """RUN_DIR/cache/<stage name>: kept across attempts, config changes and rounds. Only for caches whose keys
        fully describe their content, since nothing here is ever invalidated by the runner."""
        path = self.run_dir / "cache" / self.stage.split("@")[0]
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- process layout ---------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return int(os.environ.get("RANK", "0"))

    @property
    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def is_main(self) -> bool:
        """True in the one process that writes shared outputs (rank 0)."""
        return self.rank == 0

    # -- inputs -----------------------------------------------------------------------------------------
    def input(self, name: str, kind: str | None = None) -> Artifact:
        """One input artifact by name, with a clear error if the pipeline did not wire it."""
        from .errors import ConfigError

        if name not in self.inputs:
            raise ConfigError(
                f"stage '{self.stage}': needs input '{name}' but its `inputs` give only "
                f"{sorted(self.inputs) or 'nothing'}"
            )
        art = self.inputs[name]
        if isinstance(art, list):
            if len(art) != 1:
                raise ConfigError(f"stage '{self.stage}': input '{name}' must be one artifact, got {len(art)}")
            art = art[0]
        if kind is not None and art.kind != kind:
            raise ConfigError(f"stage '{self.stage}': input '{name}' is a '{art.kind}' artifact, expected '{kind}'")
        return art

    def input_list(self, name: str) -> list[Artifact]:
        art = self.inputs.get(name, [])
        return list(art) if isinstance(art, list) else [art]

    # -- outputs and reporting --------------------------------------------------------------------------
    def artifact(self, kind: str, relpath: str, **meta: Any) -> Artifact:
        """An Artifact under this stage's output folder (the caller writes the file)."""
        return Artifact(kind=kind, path=self.output_dir / relpath, meta=meta)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Send metrics to every logger plugin (the built-in one appends to `metrics.jsonl`)."""
        if self.hook is not None and self.is_main:
            self.hook.plinth_metrics_logged(ctx=self, metrics=dict(metrics), step=step)

    def progress(self, total: int | None, description: str = "") -> "Progress":
        """A progress tracker (stage, step, ETA) shown by the progress plugins; use as a context manager."""
        return Progress(self, total, description or self.stage)


class Progress:
    """Counts steps and forwards them to the `plinth_progress` event hook."""

    def __init__(self, ctx: StageContext, total: int | None, description: str):
        self.ctx, self.total, self.description, self.done = ctx, total, description, 0

    def __enter__(self) -> "Progress":
        self._emit(status="start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._emit(status="end")

    def update(self, n: int = 1, **info: Any) -> None:
        self.done += n
        self._emit(status="update", **info)

    def _emit(self, status: str, **info: Any) -> None:
        if self.ctx.hook is not None and self.ctx.is_main:
            self.ctx.hook.plinth_progress(
                ctx=self.ctx, description=self.description, done=self.done, total=self.total, status=status, info=info
            )
