"""What the core registers itself: the `single` and `ddp` strategies (in strategies.py), the JSONL metrics logger,
the progress display and the end-of-run summary. It uses the same hooks as any plugin, so none of these is special
to the runner.

The display is the run's only one: every line says which stage of how many is running (`[plinth] 2/7 sft: ...`),
and the libraries' own bars are switched off when a run starts (library_output.py)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .context import StageContext


@hookimpl
def plinth_register_strategies(register):
    register("single", "plinth.strategies:Single")
    register("ddp", "plinth.strategies:DDP")


# -- metrics logger ---------------------------------------------------------------------------------------
@hookimpl
def plinth_metrics_logged(ctx: "StageContext", metrics: dict[str, Any], step: int | None) -> None:
    """Append one JSON line per call to RUN_DIR/metrics.jsonl (stage, round, step, wall time, metrics)."""
    record = {"stage": ctx.stage, "round": ctx.round, "attempt": ctx.attempt, "step": step, "time": round(time.time(), 3)}
    record.update(metrics)
    line = json.dumps(record, default=str) + "\n"
    with open(ctx.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line)


# -- progress display -------------------------------------------------------------------------------------
class _ProgressDisplay:
    """Stage, step and ETA: a rich bar on a terminal, a plain line every few seconds otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, str], float] = {}
        self.last_print: dict[tuple[str, str], float] = {}
        self.last_done: dict[tuple[str, str], int] = {}
        self.bars: dict[tuple[str, str], Any] = {}
        self.rich: Any = None
        self.position: dict[str, str] = {}  # stage id -> "k/n", set when the stage starts
        self.enabled = True  # False during `plinth run --quiet`

    def label(self, stage: str) -> str:
        pos = self.position.get(stage)
        return f"{pos} {stage}" if pos else stage

    def on(self, ctx: "StageContext", description: str, done: int, total: int | None, status: str, info: dict) -> None:
        if not self.enabled or os.environ.get("PLINTH_PROGRESS", "auto") == "off":
            return
        key = (ctx.stage, description)
        now = time.monotonic()
        if status == "start":
            self.started[key] = now
            self.last_print[key] = 0.0
        if sys.stderr.isatty():
            self._rich(key, done, total, status, info)
            return
        if status == "update" and now - self.last_print.get(key, 0.0) < 5.0 and done != total:
            return
        if status == "end" and self.last_done.get(key) == done:
            return  # the final count was just printed
        self.last_print[key], self.last_done[key] = now, done
        print(self.line(key, done, total, now, status, info), file=sys.stderr, flush=True)

    def line(self, key: tuple[str, str], done: int, total: int | None, now: float, status: str, info: dict) -> str:
        stage, description = key
        elapsed = now - self.started.get(key, now)
        text = f"[plinth] {self.label(stage)}: {description} {done}"
        if total:
            text += f"/{total} ({100 * done / total:.0f}%)"
            if done and done < total and status != "end":
                text += f" ETA {_fmt_seconds(elapsed * (total - done) / done)}"
        text += f" elapsed {_fmt_seconds(elapsed)}"
        extras = " ".join(f"{k}={_fmt_value(v)}" for k, v in info.items())
        return text + (f" {extras}" if extras else "")

    def _rich(self, key: tuple[str, str], done: int, total: int | None, status: str, info: dict) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if self.rich is None:
            self.rich = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self.rich.start()
        extras = " ".join(f"{k}={_fmt_value(v)}" for k, v in info.items())
        if key not in self.bars:
            self.bars[key] = self.rich.add_task(f"{self.label(key[0])}: {key[1]}", total=total, info=extras)
        self.rich.update(self.bars[key], completed=done, total=total, info=extras)
        if status == "end":
            self.rich.remove_task(self.bars.pop(key))
            if not self.bars:
                self.rich.stop()
                self.rich = None


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


_display = _ProgressDisplay()


@hookimpl
def plinth_progress(ctx, description, done, total, status, info):
    _display.on(ctx, description, done, total, status, info)


@hookimpl
def plinth_run_started(run):
    from .library_output import quiet_libraries

    quiet_libraries()
    _display.enabled = getattr(run, "echo", True)
    ids = [st.id for st in run.plan.stages]
    _display.position = {sid: f"{i}/{len(ids)}" for i, sid in enumerate(ids, 1)}


@hookimpl(tryfirst=True)
def plinth_run_finished(run, status):
    """The stage table and where the run lives, before plugins print their results (the report comes last)."""
    if not getattr(run, "echo", True) or not run.manifest:
        return
    from .runner import summary_rows
    from .tables import print_table

    print_table(f"run {run.run_dir}", ("stage", "component", "status", "seconds", "outputs"), summary_rows(run),
                stderr=True)
    if status == "complete":
        print(f"run complete: {run.run_dir}", file=sys.stderr, flush=True)
