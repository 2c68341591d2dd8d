"""The `sparsepipe` strategy: a stage's trainer runs as a hybrid pipeline + data-parallel job (SparsePipe).

Where the stages come from (exactly one):
- `plan`: a plan file written by `plinth sparsepipe plan CLUSTER --out plan.json`;
- `cluster`: a cluster file (with its profiles), planned when the run starts (`plan_kind` picks the planner's
  plan or one of its baselines);
- `split`: block names where stages 1, 2, ... begin, with `replicas` per stage (no profile, no prediction).
The world size follows (`plinth run` launches that many processes through torchrun; several nodes join with
`plinth join`). Each rank runs one stage's blocks under the chosen schedule; the trainer gets a `PipelineRunner`
from `step_runner` (the seam in train/runner.py). With `emulate_speeds`, each rank waits so that it is as slow as
its device type's `speed` in the cluster file (emulation.py), for heterogeneous clusters on one machine.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from plinth.components import ComponentConfig, LaunchSpec, Strategy
from plinth.fileparams import file_field
from plinth.errors import ConfigError


class SparsePipeConfig(ComponentConfig):
    plan: str | None = file_field(None, description="plan file (JSON) from `plinth sparsepipe plan --out`")
    cluster: str | None = file_field(None, description="cluster file (TOML): plan when the run starts")
    profiles: list[str] = Field(default_factory=list, description="with `cluster`: TYPE=PROFILE.json overrides")
    cluster_set: list[str] = Field(default_factory=list,
                                   description="with `cluster`: KEY=VALUE overrides, as `plinth sparsepipe plan --set`")
    plan_kind: Literal["planned", "even-split", "data-parallel"] = Field(
        "planned", description="with `cluster`: the planner's plan, or one of the baselines it is compared with")
    solver: Literal["auto", "exact", "hierarchical"] = "auto"
    memory_check: bool = Field(True, description="with `cluster`: plans must fit the devices' declared memory")
    split: list[str] | None = Field(None, description="hand-written stages: the block where each stage after the "
                                                      "first begins, e.g. [\"conv3_1\", \"fc1\"]")
    replicas: list[int] | None = Field(None, description="with `split`: ranks per stage (default 1 each)")
    speeds: list[float] | None = Field(None, description="with `split` and emulate_speeds: speed of each rank")
    schedule: Literal["1f1b", "gpipe"] = Field(
        "1f1b", description="1f1b: asynchronous, weight stashing (PipeDream); gpipe: synchronous fill/drain")
    micro_batches: int | None = Field(None, ge=1, description="micro-batches each stage-0 rank cuts its batch into "
                                      "per step (default: gpipe -> the number of stages; 1f1b -> 1, or the least "
                                      "count every stage's replicas divide)")
    timeout_s: float = Field(300.0, gt=0, description="a rank waiting longer for a peer (or stuck in one op) "
                                                      "stops the run with an error naming it")
    emulate_speeds: bool = Field(False, description="make each rank as slow as its device type's `speed` by waiting "
                                                    "(heterogeneous devices emulated on one machine)")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="auto: nccl with GPUs, else gloo; nccl comes with gloo beside it for CPU messages")
    nnodes: int = Field(1, ge=1, description="machines; the others run `plinth join RUN_DIR STAGE --node-rank K`")
    node_rank: int = Field(0, ge=0)
    master_addr: str = "127.0.0.1"
    master_port: int = Field(0, ge=0, le=65535, description="0 picks a free port (single-node runs)")
    print_plan: bool = Field(True, description="print the plan table when the stage starts")

    _plan: Any = PrivateAttr(None)

    @field_validator("plan", "cluster")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        # every process (torchrun's, other nodes') reads the same file, whatever its working directory
        return str(Path(value).expanduser().resolve()) if value else value

    @model_validator(mode="after")
    def _one_source(self) -> "SparsePipeConfig":
        given = [k for k in ("plan", "cluster", "split") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `plan` (a plan file), `cluster` (plan at start) or `split` "
                             f"(hand-written stages); got {', '.join(given) or 'none'}")
        if self.split is not None:
            stages = len(self.split) + 1
            if self.replicas is not None and (len(self.replicas) != stages or min(self.replicas) < 1):
                raise ValueError(f"replicas: {stages} stages need {stages} counts >= 1, got {self.replicas}")
            if self.speeds is not None and len(self.speeds) != sum(self.stage_replicas()):
                raise ValueError(f"speeds: one per rank ({sum(self.stage_replicas())}), got {len(self.speeds)}")
        elif self.replicas is not None or self.speeds is not None:
            raise ValueError("replicas and speeds go with `split`; a plan or cluster file gives its own")
        if self.speeds is not None and not all(0 < v <= 1 for v in self.speeds):
            raise ValueError(f"speeds: each in (0, 1] (1 = this machine), got {self.speeds}")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        try:
            self._plan = self.load_plan()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        world = self.world_size()
        if world % self.nnodes:
            raise ValueError(f"the plan has {world} ranks, which do not split evenly over nnodes = {self.nnodes}")
        if self._plan is not None:
            self.placement()  # raises when the plan's servers do not map onto the nodes
        if self.emulate_speeds:
            speeds = self.rank_speeds()
            if max(speeds) > 1:
                raise ValueError(f"emulate_speeds: a device cannot be emulated faster than this one (speeds "
                                 f"{speeds}); divide the cluster's speeds by the largest")
        return self

    # -- the layout -----------------------------------------------------------------------------------------
    def stage_replicas(self) -> list[int]:
        if self._plan is not None:
            return [s.replicas for s in self._plan.stages]
        return list(self.replicas or [1] * (len(self.split) + 1))

    def world_size(self) -> int:
        return sum(self.stage_replicas())

    def load_plan(self):
        """The plan this config names (None for a hand-written `split`); raises ConfigError naming the file."""
        if self.plan is not None:
            from .plan import load_plan

            return load_plan(self.plan)
        if self.cluster is None:
            return None
        from .baselines import data_parallel_plan, even_split_plan
        from .cluster import load_cluster
        from .costs import CostModel
        from .planner import make_plan

        cluster = load_cluster(self.cluster, self.profiles, self.cluster_set)
        planned = make_plan(cluster, solver=self.solver, check_memory=self.memory_check)
        if self.plan_kind == "planned":
            return planned
        model = CostModel(cluster, check_memory=self.memory_check)
        others = {"planned": planned, "even-split": even_split_plan(model), "data-parallel": data_parallel_plan(model)}
        chosen = others.pop(self.plan_kind)
        return chosen.with_baselines(list(others.values()))

    def placement(self) -> dict[int, int]:
        """Plan rank -> process rank. Plans number ranks in stage order; torchrun numbers processes node by node
        (node k: ranks k*n .. k*n+n-1, local rank = GPU index). So the devices a plan uses are ordered as the
        cluster file lists them (servers, then each server's types, then index) and numbered in that order:
        with several nodes, node k is the k-th server the plan uses, and each must hold n of its devices."""
        plan = self._plan
        order = [f"{srv['name']}/{t}/{i}" for srv in plan.cluster.get("servers", [])
                 for t, count in srv["devices"].items() for i in range(count)]
        devices = sorted((d for s in plan.stages for d in s.devices), key=lambda d: order.index(d.id)
                         if d.id in order else len(order) + d.rank)
        if self.nnodes > 1:
            servers = list(dict.fromkeys(d.server for d in devices))
            per = {srv: sum(d.server == srv for d in devices) for srv in servers}
            if len(servers) != self.nnodes or len(set(per.values())) != 1:
                raise ValueError(f"nnodes = {self.nnodes}, but the plan uses {per} devices per server: each node runs "
                                 "one server's devices and torchrun starts as many processes on every node")
        return {d.rank: p for p, d in enumerate(devices)}

    def rank_speeds(self) -> list[float]:
        """The emulated speed of each process rank."""
        if self._plan is None:
            return list(self.speeds or [1.0] * self.world_size())
        types = self._plan.cluster.get("types", {})
        where = self.placement()
        speeds = [1.0] * self.world_size()
        for s in self._plan.stages:
            for d in s.devices:
                speeds[where[d.rank]] = float(types.get(d.type, {}).get("speed", 1.0))
        return speeds

    def micro_batches_per_reader(self) -> int:
        if self.micro_batches is not None:
            return self.micro_batches
        replicas = self.stage_replicas()
        if self.schedule == "gpipe":
            return len(replicas)
        from .schedules import Layout, min_per_reader

        return min_per_reader(Layout.from_replicas(replicas))


class SparsePipeStrategy(Strategy):
    """Hybrid pipeline + data parallelism over torch.distributed (gloo on CPUs, NCCL on GPUs); see the module."""

    Config = SparsePipeConfig

    def launch_spec(self) -> LaunchSpec:
        c: SparsePipeConfig = self.config
        if c.print_plan and c._plan is not None:
            from rich.console import Console

            from .cli import print_plan

            print_plan(c._plan, Console(stderr=True))
        world = c.world_size()
        return LaunchSpec(nproc_per_node=world // c.nnodes, nnodes=c.nnodes, node_rank=c.node_rank,
                          master_addr=c.master_addr, master_port=c.master_port)

    def backend(self) -> str:
        """The process group's back end. NCCL moves only CUDA tensors, and tags do not separate its messages; the
        step statistics rank 0 collects from the last stage are small CPU messages, so beside NCCL a gloo back end
        carries them (and any other CPU tensor): "cpu:gloo,cuda:nccl"."""
        choice = self.config.backend
        if choice == "auto":
            import torch

            choice = "nccl" if torch.cuda.is_available() else "gloo"
        return "cpu:gloo,cuda:nccl" if choice == "nccl" else choice

    def setup(self, ctx) -> None:
        import torch
        import torch.distributed as dist

        c: SparsePipeConfig = self.config
        if ctx.world_size != c.world_size():
            raise ConfigError(f"stage '{ctx.stage}': the sparsepipe plan has {c.world_size()} ranks but "
                              f"{ctx.world_size} processes were started")
        if c.emulate_speeds:
            torch.set_num_threads(1)  # the emulation's clock is this thread's CPU time
        if ctx.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend=self.backend(), timeout=timedelta(seconds=c.timeout_s))

    def step_runner(self, model, spec, ctx):
        import torch

        from .chain import chain_blocks, check_layers
        from .schedules import Layout
        from .step_runner import PipelineRunner

        c: SparsePipeConfig = self.config
        where = f"stage '{ctx.stage}': strategy sparsepipe"
        names = [n for n, _ in chain_blocks(model)]
        plan = c._plan
        if plan is not None:
            check_layers(names, plan.layers, f"{where}: {c.plan or c.cluster}")
            stages = [(s.start, s.stop) for s in plan.stages]
            where = c.placement()
            layout = Layout(tuple(tuple(where[d.rank] for d in s.devices) for s in plan.stages))
            prediction = {"kind": plan.kind, "time_per_batch_s": plan.time_per_batch_s,
                          "simulated_time_per_batch_s": plan.simulated_time_per_batch_s,
                          "batch_size": plan.batch_size, "throughput_samples_per_s": plan.throughput_samples_per_s}
        else:
            stages = split_points(names, c.split, where)
            layout = Layout.from_replicas(c.stage_replicas())
            prediction = None
        if c.emulate_speeds and torch.get_num_threads() != 1:
            print(f"{where}: emulate_speeds measures one thread's CPU time; setting torch threads to 1",
                  file=sys.stderr)
            torch.set_num_threads(1)
        speed = c.rank_speeds()[ctx.rank] if c.emulate_speeds else 1.0
        labels = [f"{names[a]}..{names[b - 1]}" for a, b in stages]
        return PipelineRunner(model, spec, ctx, layout=layout, stages=stages, schedule=c.schedule,
                              micro_batches=c.micro_batches_per_reader(), timeout_s=c.timeout_s, speed=speed,
                              labels=labels, prediction=prediction)


def split_points(names: list[str], split: list[str], where: str) -> list[tuple[int, int]]:
    """Block names where stages begin -> [(start, stop)] per stage."""
    cuts = [0]
    for name in split:
        if name not in names:
            raise ConfigError(f"{where}: split: no block {name!r} in the model (blocks: {', '.join(names)})")
        i = names.index(name)
        if i <= cuts[-1]:
            raise ConfigError(f"{where}: split: {name!r} must come after the previous stage's first block, in "
                              "model order, and no stage may be empty")
        cuts.append(i)
    cuts.append(len(names))
    return list(zip(cuts[:-1], cuts[1:]))
