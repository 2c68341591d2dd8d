"""`PipelineRunner`: the `sparsepipe` strategy's step runner, the trainer's seam (train/runner.py, seam.md).

Each rank keeps the blocks of its stage (the trainer builds the whole model, identically on every rank), makes its
optimizer over them with the trainer's `make_optimizer`, and drives a `StageRuntime`. Stage 0's replicas read
disjoint shards (`data_shard`); each batch they read is cut into `micro_batches` micro-batches by cloud. A call of
`train` runs whole steps and drains the pipeline before it returns, so the trainer checkpoints between calls.
After each call the ranks' measurements go to rank 0, which logs them (metrics.jsonl) and, at the end, writes
`pipeline.json` beside the trainer's outputs and prints a per-stage table.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from ..train.runner import StepStats, rng_state, set_rng_state
from .chain import block_prefixes, chain_blocks, stage_module
from .faults import Liveness, connect_store
from .microbatches import split
from .runtime import StageRuntime
from .schedules import Layout

MB = 1 << 20


class PipelineRunner:
    def __init__(self, model: torch.nn.Module, spec: Any, ctx: Any, *, layout: Layout,
                 stages: list[tuple[int, int]], schedule: str, micro_batches: int, timeout_s: float,
                 speed: float = 1.0, labels: list[str] | None = None, prediction: dict[str, Any] | None = None):
        self.spec, self.ctx, self.layout, self.micro_batches = spec, ctx, layout, micro_batches
        self.rank = ctx.rank
        self.stage = layout.stage_of(self.rank)
        blocks = chain_blocks(model)
        prefixes = block_prefixes(model)
        start, stop = stages[self.stage]
        self.module = stage_module(blocks, start, stop).to(spec.device)
        # stage key "<block>.<rest>" -> the whole model's key
        self.full_key = {}
        for name, block in blocks[start:stop]:
            for key in block.state_dict():
                self.full_key[f"{name}.{key}"] = f"{prefixes[id(block)]}.{key}"
        self.optimizer = spec.make_optimizer(self.module.parameters())
        self.liveness = Liveness(self.rank, layout.world_size, lambda r: f"rank {r}", timeout_s, connect_store())
        self.runtime = StageRuntime(
            self.module, layout, self.rank, optimizer=self.optimizer, loss_fn=spec.loss_fn,
            metrics_fn=spec.metrics_fn, schedule=schedule, per_reader=micro_batches, timeout_s=timeout_s,
            speed=speed, device=spec.device, lr_factor=lambda s: self.spec.lr_factor(s), labels=labels,
            liveness=self.liveness)
        self.liveness.describe = self.runtime.describe
        self.reads_data = self.stage == 0
        self.prediction = prediction or {}
        self.calls: list[dict[str, Any]] = []  # rank 0: what each train() call measured

    def data_shard(self) -> tuple[int, int]:
        return (self.layout.replica_of(self.rank), self.layout.replicas(0)) if self.reads_data else (0, 1)

    def _micro_batches(self, batches: Iterator, steps: int) -> Iterator:
        for i in range(steps):
            try:
                inputs, target = next(batches)
            except StopIteration:
                raise RuntimeError(f"PipelineRunner.train: batches ran out after {i} of {steps} steps") from None
            yield from split(inputs, target, self.micro_batches)

    def train(self, batches: Iterator | None, steps: int, first_step: int,
              on_step: Callable[[StepStats], None]) -> None:
        if self.reads_data and batches is None:
            raise ValueError(f"{self.runtime.describe(self.rank)} reads data, but no batches were given")
        self.module.train()

        def report(rep: dict[str, Any]) -> None:
            on_step(StepStats(step=rep["step"] + 1, loss=rep["loss"], lr=rep["lr"], sums=rep["sums"]))

        source = self._micro_batches(batches, steps) if self.reads_data else None
        self.runtime.reset_measurements()
        self.runtime.run(steps, first_step, source, report if self.rank == 0 else None)
        self._collect(first_step + steps)

    # -- measurements ---------------------------------------------------------------------------------------
    def _collect(self, step: int) -> None:
        """Gather every rank's measurements of the last call on rank 0 and log them (collective)."""
        mine = self.runtime.metrics()
        everyone = [None] * self.layout.world_size if self.rank == 0 else None
        if dist.is_initialized():
            dist.gather_object(mine, everyone, dst=0)
        else:
            everyone = [mine]
        if self.rank != 0:
            return
        self.calls.append({"step": step, "ranks": everyone})
        self.ctx.log_metrics(stage_metrics(everyone, self.layout), step=step)

    def summary(self) -> dict[str, Any]:
        """Rank 0: the whole run's measurements per stage (and the plan's prediction, when there is one)."""
        ranks: dict[int, dict[str, Any]] = {}
        summed = ("wall_s", "compute_s", "wait_s", "base_compute_s", "emulated_wait_s", "samples", "allreduce_bytes",
                  "forwards", "backwards")
        peaks = ("peak_activation_bytes", "peak_weight_versions", "peak_in_flight")
        for call in self.calls:
            for m in call["ranks"]:
                before = ranks.get(m["rank"])
                acc = {**m}  # the latest call's values (e.g. updates, a running count), then the totals
                if before is not None:
                    for k in summed:
                        acc[k] = before[k] + m[k]
                    for k in peaks:
                        acc[k] = max(before[k], m[k])
                    acc["step_seconds"] = before["step_seconds"] + m["step_seconds"]
                    acc["bytes_sent"] = {k: before["bytes_sent"].get(k, 0) + m["bytes_sent"].get(k, 0)
                                         for k in {*before["bytes_sent"], *m["bytes_sent"]}}
                ranks[m["rank"]] = acc
        for acc in ranks.values():
            acc["busy_fraction"] = acc["compute_s"] / max(acc["wall_s"], 1e-9)
            acc["bubble_fraction"] = 1.0 - acc["busy_fraction"]
        return {"metrics": stage_metrics(list(ranks.values()), self.layout), "ranks": list(ranks.values()),
                "prediction": self.prediction}

    # -- checkpoints and the artifact -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.runtime.load_state_dict(state["runtime"])
        set_rng_state(state["rng"])

    def full_model_state(self) -> dict[str, torch.Tensor] | None:
        """Collective: each stage's first replica sends its blocks' state to rank 0, keyed as in the model."""
        mine = None
        if self.layout.replica_of(self.rank) == 0:
            mine = {self.full_key[k]: v.detach().cpu() for k, v in self.module.state_dict().items()}
        parts = [None] * self.layout.world_size if self.rank == 0 else None
        if dist.is_initialized():
            dist.gather_object(mine, parts, dst=0)
        else:
            parts = [mine]
        if self.rank != 0:
            return None
        full: dict[str, torch.Tensor] = {}
        for part in parts:
            full.update(part or {})
        return full

    def close(self) -> None:
        self.liveness.close()
        if self.rank == 0 and self.calls:
            summary = self.summary()
            out = self.ctx.output_dir / "pipeline.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            from plinth.rundir import write_json_atomic

            write_json_atomic(out, summary)
            print_summary(summary, self.layout)


def stage_metrics(ranks: list[dict[str, Any]], layout: Layout) -> dict[str, float]:
    """Per stage (replicas averaged or summed): busy and bubble fractions, bytes sent, activation memory; and the
    pipeline's throughput and seconds per step as rank 0 saw them."""
    out: dict[str, float] = {}
    by_rank = {m["rank"]: m for m in ranks}
    head = by_rank.get(0)
    if head and head["step_seconds"]:
        seconds = sum(head["step_seconds"])
        out["pipeline/seconds_per_step"] = seconds / len(head["step_seconds"])
        out["pipeline/throughput_samples_per_s"] = head["samples"] / max(seconds, 1e-9)
    for s, members in enumerate(layout.stage_ranks):
        ms = [by_rank[r] for r in members if r in by_rank]
        if not ms:
            continue
        key = f"pipeline/stage{s}"
        out[f"{key}/busy_fraction"] = sum(m["busy_fraction"] for m in ms) / len(ms)
        out[f"{key}/bubble_fraction"] = sum(m["bubble_fraction"] for m in ms) / len(ms)
        out[f"{key}/compute_s"] = sum(m["compute_s"] for m in ms) / len(ms)
        out[f"{key}/wait_s"] = sum(m["wait_s"] for m in ms) / len(ms)
        out[f"{key}/bytes_sent"] = float(sum(sum(m["bytes_sent"].values()) for m in ms))
        out[f"{key}/allreduce_bytes"] = float(sum(m.get("allreduce_bytes", 0) for m in ms))
        out[f"{key}/peak_activation_mb"] = max(m["peak_activation_bytes"] for m in ms) / MB
        out[f"{key}/peak_weight_versions"] = float(max(m["peak_weight_versions"] for m in ms))
    return out


def print_summary(summary: dict[str, Any], layout: Layout, file=None) -> None:
    file = file or sys.stdout
    m = summary["metrics"]
    header = (f"{'stage':>5} {'ranks':>9} {'busy':>6} {'bubble':>7} {'sent MB':>9} {'activations MB':>15} "
              f"{'versions':>8}")
    lines = ["pipeline summary (per stage, replicas averaged):", header]
    for s, members in enumerate(layout.stage_ranks):
        k = f"pipeline/stage{s}"
        if f"{k}/busy_fraction" not in m:
            continue
        lines.append(f"{s:>5} {','.join(map(str, members)):>9} {m[f'{k}/busy_fraction']:>6.2f} "
                     f"{m[f'{k}/bubble_fraction']:>7.2f} {m[f'{k}/bytes_sent'] / MB:>9.2f} "
                     f"{m[f'{k}/peak_activation_mb']:>15.2f} {int(m[f'{k}/peak_weight_versions']):>8}")
    if "pipeline/throughput_samples_per_s" in m:
        line = (f"throughput {m['pipeline/throughput_samples_per_s']:.3g} samples/s, "
                f"{m['pipeline/seconds_per_step']:.3g} s per step")
        predicted = summary.get("prediction", {}).get("time_per_batch_s")
        if predicted:
            simulated = summary["prediction"].get("simulated_time_per_batch_s")
            sim = f", {simulated:.3g} s simulated on the 1F1B schedule" if simulated else ""
            line += (f" (plan predicted {predicted:.3g} s steady state{sim}, per batch of "
                     f"{summary['prediction']['batch_size']})")
        lines.append(line)
    print("\n".join(lines), file=file, flush=True)
