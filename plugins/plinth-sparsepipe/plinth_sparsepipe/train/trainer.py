"""The `pointcloud` trainer: point-cloud classification and segmentation under any strategy.

Input `dataset`: a point-cloud split (`shapes.train`, `scenes.train`, `modelnet40.train`, ...). Output `model`: a
`checkpoint` artifact, a folder with model.safetensors and config.json (model config, classes, how inputs were made,
training figures: seconds per epoch and peak memory). The work of each step is the step runner's (runner.py): the
strategy's when it offers one (`sparsepipe`), else LocalRunner (`single`, `ddp`). Checkpoints go to the work folder
every `checkpoint_every` steps or epoch; a killed run resumes from the last complete one and ends with the same
weights as an uninterrupted run (data order, augmentation draws and RNG states all come back).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from plinth import Artifact, ConfigError, StageContext, Trainer

from .config import PointcloudTrainerConfig

log = logging.getLogger("plinth.sparsepipe.train")
MB = 1 << 20


def resolve_device(choice: str, ctx: StageContext):
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"stage '{ctx.stage}': device = \"cuda\" but torch sees no GPU")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(ctx.local_rank)
    return torch.device("cuda", ctx.local_rank)


def _max_over_ranks(value: float) -> float:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _new_epoch(epoch: int) -> dict[str, Any]:
    return {"epoch": epoch, "seconds": 0.0, "steps": 0, "loss_sum": 0.0, "correct": 0.0, "count": 0.0,
            "peak_rss": 0, "start_rss": 0, "cuda_max_allocated": None}


class PointcloudTrainer(Trainer):
    Config = PointcloudTrainerConfig
    required_inputs = ("dataset",)
    input_kinds = {"dataset": "dataset"}
    outputs = {"model": "checkpoint"}

    def train(self, ctx: StageContext) -> dict[str, Artifact]:
        import torch

        from ..models import build_model, model_class, save_checkpoint
        from ..sparse import set_default_backend
        from . import data as D
        from .runner import LocalRunner, StepSpec, dist_world
        from .schedule import lr_factor, optimizer_factory
        from .tasks import loss_function, metrics_function

        cfg: PointcloudTrainerConfig = self.config
        where = f"stage '{ctx.stage}'"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        set_default_backend(cfg.backend)
        device = resolve_device(cfg.device, ctx)
        cls = model_class(cfg.model.name)
        if device.type == "cpu" and cfg.backend == "torch" and cls.input_kind != "dense":
            from ..sparse.backends import compiled

            # build (once per environment, ~20 s) or load the CPU conv kernel now: not inside the first timed step,
            # and not inside a pipeline op whose peers wait with a timeout
            compiled.kernel()
        split = ctx.input("dataset", kind="dataset")
        dataset = D.make_dataset(cfg.data_config(), split.path, cls.input_kind, cfg.augmentation())
        D.check_dataset(dataset, cls.task, cfg.features, where)

        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, D.in_channels(dataset, cls.input_kind), dataset.num_classes)
        spec = StepSpec(loss_fn=loss_function(cls.task, cfg.ignore_label), make_optimizer=optimizer_factory(cfg),
                        metrics_fn=metrics_function(cfg.ignore_label), lr_factor=lambda s: 1.0, device=device,
                        task=cls.task)
        make = getattr(ctx.strategy, "step_runner", None)
        runner = make(model, spec, ctx) if make is not None else LocalRunner(model, spec, ctx)
        rank, world = dist_world()
        try:
            shard_count = runner.data_shard()[1]
            if cfg.batch_size % shard_count:
                raise ConfigError(f"{where}: batch_size {cfg.batch_size} does not split evenly over "
                                  f"{shard_count} data-parallel processes; use a multiple of it")
            shard_batch = cfg.batch_size // shard_count
            spe = D.steps_per_epoch(len(dataset), shard_count, shard_batch)
            if spe == 0:
                raise ConfigError(f"{where}: batch_size {cfg.batch_size} is larger than the training set "
                                  f"({len(dataset)} samples in {split.path})")
            total = cfg.epochs * spe
            spec.lr_factor = lr_factor(cfg, total, spe)  # runners read it at each step
            state = self._fit(ctx, runner, dataset, cls.input_kind, shard_batch, spe, total, rank, world, device)
            full = runner.full_model_state()
        finally:
            runner.close()
        if not ctx.is_main:
            return {}
        model.load_state_dict(full)
        training = self._summary(cfg, state, spe, world, device, type(ctx.strategy).__name__)
        folder = save_checkpoint(ctx.output_dir / "model", model.cpu(), task=cls.task, classes=dataset.classes,
                                 input=cls.input_kind, data=cfg.data_config(), training=training)
        return {"model": ctx.artifact("checkpoint", folder.name, label=ctx.stage, model=cfg.model.name,
                                      task=cls.task, num_classes=dataset.num_classes)}

    # -- the loop -------------------------------------------------------------------------------------------------
    def _fit(self, ctx, runner, dataset, input_kind, shard_batch, spe, total, rank, world, device) -> dict:
        from . import checkpoints as C
        from .data import epoch_batches
        from .memory import PeakMemory

        cfg: PointcloudTrainerConfig = self.config
        state: dict[str, Any] = {"step": 0, "steps_per_epoch": spe, "total_steps": total, "epochs": []}
        loaded = C.load_latest(ctx.work_dir, rank, world)
        if loaded is not None:
            runner_state, saved = loaded
            if (saved["steps_per_epoch"], saved["total_steps"]) != (spe, total):
                raise ConfigError(f"stage '{ctx.stage}': the checkpoint in {ctx.work_dir} is for another data size")
            runner.load_state_dict(runner_state)
            state = saved
            ctx.log_metrics({"resumed_from_step": state["step"]}, step=state["step"])
            log.info("%s: resuming at step %d of %d", ctx.stage, state["step"], total)
        every = cfg.checkpoint_every or spe

        with ctx.progress(total, f"{ctx.stage} train") as progress:
            progress.done = state["step"]
            while state["step"] < total:
                epoch = state["step"] // spe
                if len(state["epochs"]) <= epoch:
                    state["epochs"].append(_new_epoch(epoch))
                rec = state["epochs"][epoch]
                epoch_end = (epoch + 1) * spe
                batches = None
                if runner.reads_data:
                    batches = iter(epoch_batches(dataset, epoch, cfg.seed, runner.data_shard(), shard_batch,
                                                 state["step"] - epoch * spe, input_kind, cfg.num_workers))
                on_step = self._reporter(ctx, progress, rec, epoch, spe)
                with PeakMemory(device) as mem:
                    rec["start_rss"] = rec["start_rss"] or mem.start_rss
                    while state["step"] < epoch_end:
                        stop = min(epoch_end, (state["step"] // every + 1) * every)
                        t0 = time.perf_counter()
                        runner.train(batches, stop - state["step"], state["step"], on_step)
                        rec["seconds"] += time.perf_counter() - t0
                        state["step"] = stop
                        rec["peak_rss"] = max(rec["peak_rss"], mem.peak_rss)
                        if stop < epoch_end:
                            C.save(ctx.work_dir, stop, rank, world, runner.state_dict(), state, cfg.keep_checkpoints)
                rec["peak_rss"] = int(_max_over_ranks(max(rec["peak_rss"], mem.peak_rss)))
                if mem.cuda_max_allocated is not None:
                    rec["cuda_max_allocated"] = int(_max_over_ranks(max(mem.cuda_max_allocated,
                                                                        rec["cuda_max_allocated"] or 0)))
                ctx.log_metrics(self._epoch_metrics(rec), step=state["step"])
                C.save(ctx.work_dir, state["step"], rank, world, runner.state_dict(), state, cfg.keep_checkpoints)
        return state

    def _reporter(self, ctx, progress, rec: dict, epoch: int, spe: int):
        cfg: PointcloudTrainerConfig = self.config

        def on_step(stats) -> None:
            rec["steps"] += 1
            rec["loss_sum"] += stats.loss
            rec["correct"] += stats.sums.get("correct", 0.0)
            rec["count"] += stats.sums.get("count", 0.0)
            progress.update(1, epoch=epoch + 1, loss=round(stats.loss, 4))
            if stats.step % cfg.log_every == 0 or stats.step % spe == 0:
                ctx.log_metrics({"loss": stats.loss, "lr": stats.lr, "epoch": epoch + 1,
                                 "accuracy": stats.sums["correct"] / max(stats.sums["count"], 1.0)}, step=stats.step)

        return on_step

    @staticmethod
    def _epoch_metrics(rec: dict) -> dict[str, Any]:
        out = {"epoch": rec["epoch"] + 1, "epoch_seconds": round(rec["seconds"], 3),
               "train_loss": rec["loss_sum"] / max(rec["steps"], 1),
               "train_accuracy": rec["correct"] / max(rec["count"], 1.0),
               "peak_rss_mb": round(rec["peak_rss"] / MB, 1),
               "peak_rss_increase_mb": round((rec["peak_rss"] - rec["start_rss"]) / MB, 1)}
        if rec["cuda_max_allocated"] is not None:
            out["cuda_max_allocated_mb"] = round(rec["cuda_max_allocated"] / MB, 1)
        return out

    def _summary(self, cfg, state: dict, spe: int, world: int, device, strategy: str) -> dict[str, Any]:
        import torch

        epochs = [self._epoch_metrics(r) for r in state["epochs"]]
        summary = {"epochs": cfg.epochs, "steps": state["total_steps"], "steps_per_epoch": spe,
                   "batch_size": cfg.batch_size, "world_size": world, "strategy": strategy, "device": str(device),
                   "backend": cfg.backend, "threads": torch.get_num_threads(),
                   "seconds_per_epoch": [e["epoch_seconds"] for e in epochs],
                   "peak_rss_mb": max(e["peak_rss_mb"] for e in epochs),
                   "peak_rss_increase_mb": max(e["peak_rss_increase_mb"] for e in epochs),
                   "final_train_loss": epochs[-1]["train_loss"], "final_train_accuracy": epochs[-1]["train_accuracy"]}
        if any("cuda_max_allocated_mb" in e for e in epochs):
            summary["cuda_max_allocated_mb"] = max(e.get("cuda_max_allocated_mb", 0.0) for e in epochs)
        return summary
