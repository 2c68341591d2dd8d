"""`plinth sparsepipe plan CLUSTER.toml [PROFILE...]`: the planner's plan for a cluster, without training.

Only argparse at import time: `plinth` builds every command's parser on each call.
"""

from __future__ import annotations

import argparse
import json
import sys

PLAN_EPILOG = """\
PROFILE is a profile JSON file for the type its `device_type` names, or TYPE=FILE (TYPE1,TYPE2=FILE for several
types), and replaces the cluster file's `profile` for those types. Examples:
  plinth sparsepipe plan examples/clusters/paper-8gpu.toml
  plinth sparsepipe plan examples/clusters/paper-8gpu.toml --set inter_server_bandwidth="100 MB/s"
  plinth sparsepipe plan cluster.toml rtx=profiles/rtx-b64.json --out plan.json
  plinth sparsepipe plan cluster.toml --baseline even-split --json
"""


def add_commands(subparsers) -> None:
    """`plinth sparsepipe ...`: a command group, so the profiler and runtime can add their verbs beside `plan`."""
    group = subparsers.add_parser("sparsepipe", help="SparsePipe tools: plan a hybrid pipeline for a cluster")
    verbs = group.add_subparsers(dest="sparsepipe_command", metavar="COMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)
    add_plan_parser(verbs)
    from .profile_cli import add_profile_parser  # argparse only, like this module

    add_profile_parser(verbs)


def add_plan_parser(verbs) -> argparse.ArgumentParser:
    p = verbs.add_parser(
        "plan", help="plan stages, replicas and devices for a cluster file (prints a table, trains nothing)",
        description="Partition the model's layers into pipeline stages over the cluster's devices (PipeDream's "
                    "dynamic programme extended to device types) and compare with data parallelism and an even "
                    "split, all priced by the same cost model.",
        epilog=PLAN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("cluster", help="cluster TOML file")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help="profile JSON files (see below)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a cluster key, e.g. --set types.titan-v.speed=0.5 (repeatable)")
    p.add_argument("--solver", choices=["auto", "exact", "hierarchical"], default="auto",
                   help="exact: every plan of the cost model; hierarchical: per server, then across servers "
                        "(the paper's); auto: exact while it is cheap (default)")
    p.add_argument("--baseline", choices=["even-split", "data-parallel"],
                   help="print/save this baseline instead of the planner's plan (compared with the others)")
    p.add_argument("--no-memory-check", action="store_true", help="ignore the devices' memory")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.add_argument("--out", metavar="PLAN.json", help="also write the plan file (what the runtime reads)")
    p.set_defaults(func=cmd_plan)
    return p


def cmd_plan(args) -> int:
    from .baselines import data_parallel_plan, even_split_plan
    from .cluster import load_cluster
    from .costs import CostModel
    from .plan import save_plan
    from .planner import make_plan

    cluster = load_cluster(args.cluster, args.profiles, args.overrides)
    planned = make_plan(cluster, solver=args.solver, check_memory=not args.no_memory_check)
    plan = planned
    if args.baseline:
        model = CostModel(cluster, check_memory=not args.no_memory_check)
        plans = {"planned": planned, "even-split": even_split_plan(model), "data-parallel": data_parallel_plan(model)}
        plan = plans.pop(args.baseline).with_baselines(list(plans.values()))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print_plan(plan)
    if args.out:
        save_plan(plan, args.out)
        print(f"plan written: {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


# -- the table ----------------------------------------------------------------------------------------------
def seconds(x: float) -> str:
    return f"{x * 1e3:.4g} ms" if x < 1 else f"{x:.4g} s"


def gigabytes(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:.3g} GB"


def layer_range(stage) -> str:
    names = stage.first_layer if stage.stop - stage.start == 1 else f"{stage.first_layer}..{stage.last_layer}"
    return f"{names}\n[{stage.start}, {stage.stop})"


def device_groups(stage) -> str:
    """'node0: rtx x4' per server, in the stage's device order."""
    groups: dict[str, dict[str, int]] = {}
    for d in stage.devices:
        groups.setdefault(d.server, {}).setdefault(d.type, 0)
        groups[d.server][d.type] += 1
    return "\n".join(f"{s}: " + ", ".join(f"{t} x{n}" for t, n in types.items()) for s, types in groups.items())


def print_plan(plan, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 140)  # logs and pipes: one row per stage
    name = plan.cluster.get("name", "")
    solver = f", {plan.solver} solver" if plan.solver else ""
    table = Table(title=f"{plan.kind} plan for {name}: {plan.model}, batch {plan.batch_size}{solver}")
    for col in ("stage", "layers", "devices", "slowest", "compute", "all-reduce", "per batch", "send", "in flight",
                "memory / limit"):
        table.add_column(col, overflow="fold", justify="right" if col in ("stage", "in flight") else "left")
    for s in plan.stages:
        memory = f"{gigabytes(s.memory_bytes)} / {gigabytes(s.memory_limit_bytes)}"
        if s.memory_limit_bytes is not None and s.memory_bytes > s.memory_limit_bytes:
            memory = f"[red]{memory}[/red]"
        table.add_row(
            str(s.index), layer_range(s), device_groups(s),
            s.compute_type, seconds(s.compute_s), seconds(s.allreduce_s), seconds(s.time_s),
            seconds(s.send_s) if s.index < len(plan.stages) - 1 else "-", str(s.in_flight), memory,
        )
    console.print(table)
    unused = f"; unused: {', '.join(plan.unused_devices)}" if plan.unused_devices else ""
    fits = "" if plan.fits_memory else " [red](does not fit memory)[/red]"
    console.print(
        f"predicted {seconds(plan.time_per_batch_s)} per batch ({plan.throughput_samples_per_s:.4g} samples/s), "
        f"bottleneck {plan.bottleneck}{fits}; {plan.world_size} devices{unused}"
        + (f"; planned in {seconds(plan.planner_seconds)}" if plan.planner_seconds is not None else "")
    )
    if plan.simulated_time_per_batch_s is not None and plan.time_per_batch_s > 0:
        capped = (f"; solved with at most {plan.replica_cap} replicas per stage, which simulates faster than the "
                  "steady state's optimum" if plan.replica_cap is not None else "")
        console.print(f"simulated 1F1B schedule (stalls included): {seconds(plan.simulated_time_per_batch_s)} per "
                      f"batch, {plan.simulated_time_per_batch_s / plan.time_per_batch_s:.2f}x the steady state{capped}")
    if plan.compared_to:
        cmp = Table(title="compared with (same cost model)")
        for col in ("plan", "time per batch", "samples/s", "fits memory", f"speed-up of {plan.kind}", "simulated",
                    "simulated speed-up"):
            cmp.add_column(col)
        for kind, other in plan.compared_to.items():
            sim = other.simulated_time_per_batch_s
            cmp.add_row(kind, seconds(other.time_per_batch_s), f"{other.throughput_samples_per_s:.4g}",
                        "yes" if other.fits_memory else "[red]no[/red]", f"{plan.speedup[kind]:.3f}x",
                        seconds(sim) if sim is not None else "-",
                        f"{plan.simulated_speedup[kind]:.3f}x" if kind in plan.simulated_speedup else "-")
        console.print(cmp)
        faster = [k for k, v in plan.simulated_speedup.items() if v < 1.0]
        if faster:
            best = min(faster, key=lambda k: plan.compared_to[k].simulated_time_per_batch_s)
            how = "without `--baseline`" if best == "planned" else f"with `--baseline {best}`"
            console.print(f"[yellow]the {', '.join(faster)} plan simulates faster than this one (the steady state "
                          f"does not see every stall; see `simulated`): {how} the command writes the "
                          f"{best} plan[/yellow]")
    if not plan.memory_checked:
        console.print("memory not checked (no device type declares `memory`, or --no-memory-check)")
