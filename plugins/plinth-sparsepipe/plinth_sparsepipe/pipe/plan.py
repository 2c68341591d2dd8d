"""The plan file: which layers each pipeline stage runs on which devices, and what the cost model predicts.

Format `plinth-sparsepipe-plan/1` (JSON), written by `plinth sparsepipe plan --out` and read by the runtime.
Ranks are numbered in stage order, then in each stage's device order; stage `i` runs layers [start, stop) of the
profile's layer list. Times are seconds per batch of `batch_size` samples. The runtime needs `stages[*].start`,
`stop`, `devices[*].rank`, `replicas` and `world_size`; everything else is the prediction, kept to compare with
what is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .costs import Prediction
from .files import PlanFileError, read_json, validate
from .timeline import steady_per_batch_s

PLAN_FORMAT = "plinth-sparsepipe-plan/1"
PlanKind = Literal["planned", "even-split", "data-parallel"]


class PlanDevice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(ge=0)
    id: str = Field(description="server/type/index")
    server: str
    type: str
    index: int = Field(ge=0, description="among the server's devices of this type")


class PlanStage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    start: int = Field(ge=0, description="first layer (index into `layers`)")
    stop: int = Field(gt=0, description="one past the last layer")
    first_layer: str
    last_layer: str
    replicas: int = Field(ge=1)
    devices: list[PlanDevice] = Field(min_length=1)
    compute_type: str = Field(description="the device type whose speed governs the stage")
    compute_s: float = Field(description="forward + backward of the stage's layers on compute_type, one batch")
    allreduce_s: float = Field(description="gradient all-reduce among the replicas, per step")
    time_s: float = Field(description="(compute_s + allreduce_s) / replicas: the stage's time per batch")
    send_s: float = Field(description="activations out + gradients back at the boundary after this stage")
    in_flight: int = Field(ge=1, description="batches a replica holds at once under 1F1B (weight versions too)")
    memory_bytes: float = Field(description="predicted peak: in_flight * (stashed activations + parameters)")
    memory_limit_bytes: float | None = Field(description="the smallest declared memory of its devices")


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time_per_batch_s: float
    throughput_samples_per_s: float
    fits_memory: bool
    simulated_time_per_batch_s: float | None = None


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["plinth-sparsepipe-plan/1"] = PLAN_FORMAT
    kind: PlanKind
    solver: str | None = Field(None, description="exact | hierarchical for planned plans")
    model: str
    batch_size: int = Field(gt=0)
    layers: list[str] = Field(min_length=1)
    world_size: int = Field(ge=1, description="devices the plan uses (ranks 0..world_size-1)")
    stages: list[PlanStage] = Field(min_length=1)
    unused_devices: list[str] = Field(default_factory=list)
    time_per_batch_s: float = Field(description="the cost model's steady state: the slowest stage or boundary")
    throughput_samples_per_s: float
    simulated_time_per_batch_s: float | None = Field(
        None, description="1F1B on the runtime's op lists, on a clock (timeline.py): the stalls of replicated "
                          "stages included; at the fewest micro-batches per step the layout allows")
    bottleneck: str = Field(description="'stage i' or 'send i->i+1': what sets the time per batch")
    fits_memory: bool
    memory_checked: bool
    compared_to: dict[str, Summary] = Field(default_factory=dict, description="baselines priced the same way")
    speedup: dict[str, float] = Field(default_factory=dict, description="baseline time / this plan's time")
    simulated_speedup: dict[str, float] = Field(default_factory=dict, description="the same, simulated times")
    cluster: dict[str, Any] = Field(default_factory=dict, description="the cluster as planned for")
    planner_seconds: float | None = None
    replica_cap: int | None = Field(None, description="planned with at most this many replicas per stage, because "
                                                      "that plan simulates faster (timeline.py); None: uncapped")

    @model_validator(mode="after")
    def _consistent(self) -> "Plan":
        at, ranks = 0, []
        for i, s in enumerate(self.stages):
            if s.index != i or s.start != at or s.stop <= s.start:
                raise ValueError(f"stages[{i}]: layers [{s.start}, {s.stop}) do not follow layer {at}")
            if s.replicas != len(s.devices):
                raise ValueError(f"stages[{i}].replicas: {s.replicas} != {len(s.devices)} devices")
            ranks += [d.rank for d in s.devices]
            at = s.stop
        if at != len(self.layers):
            raise ValueError(f"stages: end at layer {at}, `layers` has {len(self.layers)}")
        if ranks != list(range(self.world_size)):
            raise ValueError(f"stages[*].devices[*].rank: must be 0..{self.world_size - 1} in stage order")
        return self

    def summary(self) -> Summary:
        return Summary(time_per_batch_s=self.time_per_batch_s,
                       throughput_samples_per_s=self.throughput_samples_per_s, fits_memory=self.fits_memory,
                       simulated_time_per_batch_s=self.simulated_time_per_batch_s)

    def with_baselines(self, baselines: list["Plan"]) -> "Plan":
        """This plan, with each baseline's figures and the speed-up over it."""
        return self.model_copy(update={
            "compared_to": {b.kind: b.summary() for b in baselines},
            "speedup": {b.kind: b.time_per_batch_s / self.time_per_batch_s for b in baselines},
            "simulated_speedup": {b.kind: b.simulated_time_per_batch_s / self.simulated_time_per_batch_s
                                  for b in baselines
                                  if b.simulated_time_per_batch_s and self.simulated_time_per_batch_s},
        })

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def plan_from_prediction(kind: PlanKind, prediction: Prediction, cost_model, solver: str | None = None,
                         planner_seconds: float | None = None, simulated: float | None = None) -> Plan:
    """The plan file of a priced plan; `simulated`: its steady 1F1B time on the timeline, if already known."""
    cluster = cost_model.cluster
    names = cost_model.layer_names
    stages, rank = [], 0
    used = set()
    for i, c in enumerate(prediction.stages):
        devices = []
        for d in c.devices:
            devices.append(PlanDevice(rank=rank, id=d.id, server=d.server, type=d.type, index=d.index))
            used.add(d.id)
            rank += 1
        stages.append(PlanStage(
            index=i, start=c.start, stop=c.stop, first_layer=names[c.start], last_layer=names[c.stop - 1],
            replicas=len(devices), devices=devices, compute_type=c.compute_type, compute_s=c.compute_s,
            allreduce_s=c.allreduce_s, time_s=c.time_s, send_s=c.send_s, in_flight=c.in_flight,
            memory_bytes=c.memory_bytes, memory_limit_bytes=c.memory_limit_bytes,
        ))
    first = next(iter(cluster.types.values())).profile
    if simulated is None:
        simulated = steady_per_batch_s(cost_model, [(c.start, c.stop, list(c.devices)) for c in prediction.stages])
    return Plan(
        kind=kind, solver=solver, model=first.model, batch_size=cost_model.batch_size, layers=names,
        world_size=rank, stages=stages, unused_devices=[d.id for d in cluster.devices() if d.id not in used],
        time_per_batch_s=prediction.time_s, throughput_samples_per_s=cost_model.batch_size / prediction.time_s,
        simulated_time_per_batch_s=simulated,
        bottleneck=prediction.bottleneck, fits_memory=prediction.fits_memory,
        memory_checked=cost_model.check_memory and any(m is not None for m in cost_model.memory.values()),
        cluster=cluster.to_json(), planner_seconds=planner_seconds,
    )


def load_plan(path: Path | str) -> Plan:
    path = Path(path)
    return validate(Plan, read_json(path, "plan", PlanFileError), PLAN_FORMAT, path, PlanFileError)


def save_plan(plan: Plan, path: Path | str) -> Path:
    from plinth.rundir import write_json_atomic

    write_json_atomic(Path(path), plan.to_json())
    return Path(path)
