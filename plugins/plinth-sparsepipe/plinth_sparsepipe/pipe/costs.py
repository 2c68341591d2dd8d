"""The planner's cost model: the predicted steady-state time per batch of any plan on a cluster.

A plan is a list of stages, each a contiguous layer range [start, stop) on a set of R devices (R replicas taking
batches in turn). With one profile per device type, per batch of the profiles' batch size:

- compute C = forward + backward + update of the stage's layers (1F1B updates after every batch), plus the
  `restart_s` of the layer before the stage (what the cut makes it rebuild), on the type that is slowest for that
  among the stage's devices (synchronous replicas wait for the slowest);
- all-reduce A = 2 (R-1) P / (R B), P the stage's parameter bytes, B the bandwidth inside the stage: the server's
  intra-server bandwidth if all its devices are on one server, else the inter-server bandwidth;
- stage time (C + A) / R (R batches are in flight on R replicas per C + A);
- boundary after a stage: (2 F + X) / B, F and X the output feature and coordinate bytes of its last layer
  (features forward and their gradient backward, coordinates forward only), B the intra-server bandwidth when this
  stage and the next are on one and the same server, else the inter-server bandwidth;
- time per batch = the largest stage or boundary time (1F1B overlaps communication with compute).

Memory (1F1B with weight stashing): a stage's replica keeps `in_flight = (D - 1) // R + 1` batches, D the devices
of this stage and every later one (the paper's runtime: warm-up = (ranks - 1 - earlier ranks) // stage ranks, plus
one), each with its stash (output bytes of every layer of the stage) and its weight version:
in_flight * (stash + P) must fit the memory of each of the stage's device types that declares one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cluster import Cluster, Device


@dataclass(frozen=True)
class StageCost:
    start: int
    stop: int
    devices: tuple[Device, ...]
    compute_type: str
    compute_s: float
    allreduce_s: float
    time_s: float
    send_s: float  # the boundary after this stage; 0 for the last
    in_flight: int
    memory_bytes: float
    memory_limit_bytes: float | None

    @property
    def fits_memory(self) -> bool:
        return self.memory_limit_bytes is None or self.memory_bytes <= self.memory_limit_bytes


@dataclass(frozen=True)
class Prediction:
    stages: tuple[StageCost, ...]
    time_s: float
    bottleneck: str

    @property
    def fits_memory(self) -> bool:
        return all(s.fits_memory for s in self.stages)


class CostModel:
    """Prefix sums of the cluster's profiles, so any stage is priced in O(types)."""

    def __init__(self, cluster: Cluster, check_memory: bool = True):
        self.cluster = cluster
        self.check_memory = check_memory
        self.type_names = list(cluster.types)
        profiles = [t.profile for t in cluster.types.values()]
        self.n_layers = len(profiles[0].layers)
        self.batch_size = profiles[0].batch_size
        self.layer_names = profiles[0].layer_names

        def prefix(values) -> np.ndarray:
            return np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=float))])

        # times per type; sizes from every profile (the largest, where measured sizes differ slightly)
        self.time_prefix = {t.name: prefix([x.time_s for x in t.profile.layers]) for t in cluster.types.values()}
        self.forward_prefix = {t.name: prefix([x.forward_s for x in t.profile.layers]) for t in cluster.types.values()}
        self.update_prefix = {t.name: prefix([x.update_s for x in t.profile.layers]) for t in cluster.types.values()}
        # restart[t][i]: what a stage starting at layer i pays for the cut before it (0 for the first stage)
        self.restart = {t.name: np.array([0.0] + [x.restart_s for x in t.profile.layers[:-1]])
                        for t in cluster.types.values()}
        self.param_prefix = prefix([x.parameter_bytes for x in profiles[0].layers])
        self.stash_prefix = prefix(np.max([[x.output_bytes for x in p.layers] for p in profiles], axis=0))
        feat = np.max([[x.output_feature_bytes for x in p.layers] for p in profiles], axis=0)
        coord = np.max([[x.output_coordinate_bytes for x in p.layers] for p in profiles], axis=0)
        self.feature_bytes, self.coordinate_bytes = feat, coord  # after layer k, for k in 0..L-1
        self.boundary_bytes = 2 * feat + coord  # features forward and their gradient back, coordinates forward
        self.memory = {t.name: (t.memory if check_memory else None) for t in cluster.types.values()}
        self.intra = {s.name: s.intra_bandwidth for s in cluster.servers}
        self.inter = cluster.inter_bandwidth if cluster.inter_bandwidth is not None else math.inf

    # -- pieces ---------------------------------------------------------------------------------------------
    def compute(self, types, start: int, stop: int) -> tuple[float, str]:
        """Forward + backward of layers [start, stop) and the restart after the cut before them, on the slowest
        of `types` for that."""
        return max((self.time_prefix[t][stop] - self.time_prefix[t][start] + self.restart[t][start], t)
                   for t in types)

    def forward_backward_update(self, device_type: str, start: int, stop: int) -> tuple[float, float, float]:
        """(forward + the cut's restart, backward, update) of layers [start, stop) on one device type."""
        t = device_type
        total = self.time_prefix[t][stop] - self.time_prefix[t][start]
        forward = self.forward_prefix[t][stop] - self.forward_prefix[t][start]
        update = self.update_prefix[t][stop] - self.update_prefix[t][start]
        return float(forward + self.restart[t][start]), float(total - forward - update), float(update)

    def params(self, start: int, stop: int) -> float:
        return float(self.param_prefix[stop] - self.param_prefix[start])

    def stash(self, start: int, stop: int) -> float:
        return float(self.stash_prefix[stop] - self.stash_prefix[start])

    def allreduce(self, start: int, stop: int, devices) -> float:
        """Ring all-reduce of layers [start, stop)'s gradients among `devices`: 2 (R-1) P / (R B)."""
        r = len(devices)
        return 2 * (r - 1) * self.params(start, stop) / (r * self.bandwidth(devices)) if r > 1 else 0.0

    def bandwidth(self, devices) -> float:
        servers = {d.server for d in devices}
        return self.intra[next(iter(servers))] if len(servers) == 1 else self.inter

    def boundary(self, after_layer: int, left, right) -> float:
        servers = {d.server for d in left} | {d.server for d in right}
        bw = self.intra[next(iter(servers))] if len(servers) == 1 else self.inter
        return float(self.boundary_bytes[after_layer]) / bw

    @staticmethod
    def in_flight(replicas: int, devices_from_here: int) -> int:
        return (devices_from_here - 1) // replicas + 1

    def memory_limit(self, types) -> float | None:
        limits = [self.memory[t] for t in types if self.memory[t] is not None]
        return min(limits) if limits else None

    # -- a whole plan ---------------------------------------------------------------------------------------
    def evaluate(self, stages: list[tuple[int, int, list[Device]]]) -> Prediction:
        """Price a plan given as [(start, stop, devices)], stages in pipeline order covering every layer once."""
        self.check_stages(stages)
        costs: list[StageCost] = []
        later = sum(len(d) for _, _, d in stages)
        for n, (start, stop, devices) in enumerate(stages):
            r = len(devices)
            types = list(dict.fromkeys(d.type for d in devices))
            compute, slow = self.compute(types, start, stop)
            p = self.params(start, stop)
            allreduce = self.allreduce(start, stop, devices)
            send = self.boundary(stop - 1, devices, stages[n + 1][2]) if n + 1 < len(stages) else 0.0
            flight = self.in_flight(r, later)
            later -= r
            costs.append(StageCost(
                start, stop, tuple(devices), slow, compute, allreduce, (compute + allreduce) / r, send,
                flight, flight * (self.stash(start, stop) + p), self.memory_limit(types),
            ))
        items = [(c.time_s, f"stage {i}") for i, c in enumerate(costs)]
        items += [(c.send_s, f"send {i}->{i + 1}") for i, c in enumerate(costs[:-1])]
        time_s, bottleneck = max(items, key=lambda x: x[0])
        return Prediction(tuple(costs), time_s, bottleneck)

    def check_stages(self, stages) -> None:
        """ValueError unless `stages` cover every layer once, contiguously, each on its own non-empty devices."""
        if not stages:
            raise ValueError("a plan needs at least one stage")
        at = 0
        seen: set[str] = set()
        for start, stop, devices in stages:
            if start != at or stop <= start:
                raise ValueError(f"stages must cover layers 0..{self.n_layers} contiguously; got [{start}, {stop})")
            if not devices:
                raise ValueError(f"stage [{start}, {stop}) has no device")
            for d in devices:
                if d.id in seen:
                    raise ValueError(f"device {d.id} is in two stages")
                seen.add(d.id)
            at = stop
        if at != self.n_layers:
            raise ValueError(f"stages end at layer {at}, the model has {self.n_layers}")
