"""`plinth sparsepipe profile PIPELINE.toml STAGE --out PROFILE.json`: measure the model of a `pointcloud` trainer
stage, on its own dataset, with the profiler (profiler.py), and write the planner's profile file.

The model and its inputs are built exactly as the trainer builds them (its config: model, voxel size, points,
features, seed). The dataset is the stage's `dataset` input: the output of an earlier stage, found in the run
directory once that stage has run (`plinth run` it first), or `--dataset PATH`. Only argparse at import time.
"""

from __future__ import annotations

import argparse

EPILOG = """\
Examples:
  plinth sparsepipe profile examples/sparsepipe-shapes.toml pipelined --out cpu-b8.json --batch-size 8
  plinth sparsepipe profile my.toml train --dataset runs/my/stages/data/out/train --device-type rtx --out rtx.json
  plinth sparsepipe profile examples/sparsepipe-shapes.toml pipelined --emulate-speed 0.5 --out cpu-half.json
The file is what a cluster's [types.NAME] profile = "..." points to (see docs/plugins/sparsepipe.md).
"""


def add_profile_parser(verbs) -> argparse.ArgumentParser:
    p = verbs.add_parser(
        "profile", help="measure a trainer stage's model block by block (the planner's profile file)",
        description="Time forward and backward of every block of a pointcloud trainer stage's model on this "
                    "device, with the sizes of its outputs and parameters, and write a profile JSON.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pipeline", help="pipeline TOML file")
    p.add_argument("stage", help="the pointcloud trainer stage whose model and data to profile")
    p.add_argument("--out", required=True, metavar="PROFILE.json", help="where to write the profile")
    p.add_argument("--dataset", help="the training split to draw batches from (default: the stage's input, "
                                     "from the run directory)")
    p.add_argument("--run-dir", help="run directory (default: the pipeline's)")
    p.add_argument("--batch-size", type=int, help="samples per batch (default: the stage's batch_size)")
    p.add_argument("--device-type", default=None, help="the name the cluster file gives this device "
                                                       "(default: cpu, or cuda)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as pipeline ranks run)")
    p.add_argument("--warmup", type=int, default=2, help="iterations before measuring (default 2)")
    p.add_argument("--iterations", type=int, default=5, help="measured iterations, averaged (default 5)")
    p.add_argument("--emulate-speed", type=float, default=1.0, metavar="S",
                   help="profile as an emulated device of speed S in (0, 1] computes: each span of compute "
                        "followed by the runtime's wait (default 1.0; use the cluster type's `speed` for a type "
                        "with emulate_speeds)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline value, as `plinth run --set`")
    p.set_defaults(func=cmd_profile)
    return p


def _stage_and_dataset(args):
    from pathlib import Path

    from plinth.artifacts import Artifact
    from plinth.errors import ConfigError
    from plinth.pipeline import build_plan
    from plinth.plugins import load_plugins
    from plinth.registry import load_registry
    from plinth.rundir import load_manifest

    # every stage as if under `single`: profiling uses no strategy, and a sparsepipe stage's cluster may name the
    # very profile this command is about to write
    from plinth.pipeline import read_toml

    stages = read_toml(Path(args.pipeline)).get("stages", {})
    single = [f'{name}.strategy="single"' for name in stages if isinstance(stages[name], dict)]
    plan = build_plan(args.pipeline, load_plugins(), load_registry(getattr(args, "registry", None)),
                      overrides=[*single, *args.overrides], run_dir=args.run_dir)
    stage = next((s for s in plan.stages if args.stage in (s.id, s.name)), None)
    if stage is None:
        raise ConfigError(f"{args.pipeline}: no stage '{args.stage}' (stages: {', '.join(s.id for s in plan.stages)})")
    if stage.slot != "trainer" or stage.component_name != "pointcloud":
        raise ConfigError(f"{args.pipeline}: stage '{stage.id}' is {stage.slot} '{stage.component_name}'; "
                          "the profiler measures `pointcloud` trainer stages")
    if args.dataset:
        return stage, Path(args.dataset)
    ref = stage.inputs.get("dataset")
    if ref is None:
        raise ConfigError(f"{args.pipeline}: stage '{stage.id}' has no `dataset` input; pass --dataset PATH")
    if ref[0] == "path":
        return stage, Path(ref[1].path)
    _, src, out = ref
    rec = load_manifest(plan.run_dir)["stages"].get(src, {}) if (plan.run_dir / "manifest.json").exists() else {}
    if rec.get("status") != "complete" or out not in rec.get("outputs", {}):
        raise ConfigError(f"stage '{stage.id}' reads {src}.{out}, which {plan.run_dir} does not hold yet: run "
                          f"`plinth run {args.pipeline}` until stage '{src}' is complete, or pass --dataset PATH")
    return stage, Artifact.from_json(rec["outputs"][out], plan.run_dir).path


def cmd_profile(args) -> int:
    import torch

    from ..models import build_model, model_class
    from ..train import data as D
    from ..train.schedule import optimizer_factory
    from plinth.errors import ConfigError

    from ..train.tasks import loss_function
    from .profile import save_profile
    from .profiler import profile_model

    if not 0 < args.emulate_speed <= 1.0:
        raise ConfigError(f"--emulate-speed must be in (0, 1], got {args.emulate_speed:g}")
    stage, dataset_path = _stage_and_dataset(args)
    cfg = stage.component.config
    torch.set_num_threads(args.threads)
    want = cfg.device if args.device == "auto" else args.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"stage '{stage.id}': device cuda asked for, but torch sees no GPU")
    device = torch.device("cuda" if want != "cpu" and torch.cuda.is_available() else "cpu")
    cls = model_class(cfg.model.name)
    dataset = D.make_dataset(cfg.data_config(), dataset_path, cls.input_kind, None)
    D.check_dataset(dataset, cls.task, cfg.features, f"stage '{stage.id}'")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, D.in_channels(dataset, cls.input_kind), dataset.num_classes)
    batch_size = args.batch_size or cfg.batch_size
    needed = args.warmup + args.iterations
    batches = []
    for epoch in range(needed):
        for b in D.epoch_batches(dataset, epoch, cfg.seed, (0, 1), batch_size, 0, cls.input_kind):
            batches.append(b)
            if len(batches) == needed:
                break
        if len(batches) == needed or not batches:
            break
    if not batches:
        raise SystemExit(f"{dataset_path}: fewer than {batch_size} samples; use a smaller --batch-size")
    profile = profile_model(model, batches, loss_function(cls.task, cfg.ignore_label), device=device,
                            make_optimizer=optimizer_factory(cfg), warmup=args.warmup, iterations=args.iterations,
                            device_type=args.device_type or device.type, model_name=cfg.model.name,
                            emulate_speed=args.emulate_speed)
    save_profile(profile, args.out)
    print_profile(profile)
    print(f"profile written: {args.out}")
    return 0


def print_profile(profile) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{profile.model} on {profile.device_type}, batch {profile.batch_size} "
                        f"({profile.meta.get('clock', '')})")
    for col in ("block", "forward ms", "backward ms", "update ms", "output MB", "parameters MB"):
        table.add_column(col, justify="left" if col == "block" else "right")
    for layer in profile.layers:
        table.add_row(layer.name, f"{layer.forward_s * 1e3:.3g}", f"{layer.backward_s * 1e3:.3g}",
                      f"{layer.update_s * 1e3:.3g}", f"{layer.output_bytes / 1e6:.3g}",
                      f"{layer.parameter_bytes / 1e6:.3g}")
    Console().print(table)
    print(f"one iteration: {profile.total_time_s * 1e3:.4g} ms (forward + backward + update of every block)")
