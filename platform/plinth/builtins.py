"""What the core registers itself: the `single` and `ddp` strategies, the JSONL metrics logger and the progress
display. It uses the same hooks as any plugin, so none of these is special to the runner."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Literal

from pydantic import Field

from .components import ComponentConfig, LaunchSpec, Strategy
from .context import StageContext
from .hookspecs import hookimpl


# -- strategies -------------------------------------------------------------------------------------------
class Single(Strategy):
    """One process, whatever devices it sees (the default)."""

    class Config(ComponentConfig):
        pass


class DDP(Strategy):
    """torch DistributedDataParallel across `nproc_per_node` processes (x `nnodes`), launched by `plinth run`."""

    class Config(ComponentConfig):
        nproc_per_node: int = Field(2, ge=1, description="processes per node (one per GPU on GPU machines)")
        nnodes: int = Field(1, ge=1)
        node_rank: int = Field(0, ge=0)
        master_addr: str = "127.0.0.1"
        master_port: int = Field(0, ge=0, le=65535, description="0 picks a free port (single-node runs)")
        backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl with GPUs, else gloo")

    def launch_spec(self) -> LaunchSpec:
        c = self.config
        return LaunchSpec(
            nproc_per_node=c.nproc_per_node,
            nnodes=c.nnodes,
            node_rank=c.node_rank,
            master_addr=c.master_addr,
            master_port=c.master_port,
        )

    def backend(self) -> str:
        if self.config.backend != "auto":
            return self.config.backend
        import torch

        return "nccl" if torch.cuda.is_available() else "gloo"

    def setup(self, ctx: StageContext) -> None:
        import torch.distributed as dist

        if ctx.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend=self.backend())

    def training_arguments(self, ctx: StageContext) -> dict[str, Any]:
        return {"ddp_backend": self.backend()}

    def wrap_model(self, model: Any, ctx: StageContext) -> Any:
        if ctx.world_size <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ctx.local_rank] if self.backend() == "nccl" else None
        return DistributedDataParallel(model, device_ids=device_ids)


@hookimpl
def plinth_register_strategies(register):
    register("single", Single)
    register("ddp", DDP)


# -- metrics logger ---------------------------------------------------------------------------------------
@hookimpl
def plinth_metrics_logged(ctx: StageContext, metrics: dict[str, Any], step: int | None) -> None:
    """Append one JSON line per call to RUN_DIR/metrics.jsonl (stage, round, step, wall time, metrics)."""
    record = {"stage": ctx.stage, "round": ctx.round, "step": step, "time": round(time.time(), 3)}
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
        self.bars: dict[tuple[str, str], Any] = {}
        self.rich: Any = None

    def on(self, ctx: StageContext, description: str, done: int, total: int | None, status: str, info: dict) -> None:
        if os.environ.get("PLINTH_PROGRESS", "auto") == "off":
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
        self.last_print[key] = now
        print(self.line(key, done, total, now, status, info), file=sys.stderr, flush=True)

    def line(self, key: tuple[str, str], done: int, total: int | None, now: float, status: str, info: dict) -> str:
        stage, description = key
        elapsed = now - self.started.get(key, now)
        text = f"[plinth] {stage}: {description} {done}"
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
            self.bars[key] = self.rich.add_task(f"{key[0]}: {key[1]}", total=total, info=extras)
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
