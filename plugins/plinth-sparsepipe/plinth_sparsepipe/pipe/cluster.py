"""The cluster file: servers, their devices by type, each type's profile, bandwidths and device memory.

Format `plinth-sparsepipe-cluster/1` (TOML); sizes are bytes and bandwidths bytes/s, as numbers or with a unit
("10 GB/s", "100 MB/s", "12 GiB"); profile paths are relative to the cluster file:

    name = "paper-8gpu"
    inter_server_bandwidth = "10 GB/s"

    [types.rtx]
    profile = "profiles/sparse-vgg16-bn-b64.json"
    speed = 1.0          # optional: the profile's times are divided by this (emulated or simulated devices)
    memory = "11 GB"     # optional: device memory; without it this type's memory is not checked

    [[servers]]
    name = "node0"
    intra_server_bandwidth = "12 GB/s"
    devices = { rtx = 4 }

Every problem is reported as `FILE: FIELD: problem` before any planning starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .files import ClusterError, ProfileError, read_text, validation_message
from .profile import Profile, load_profile

CLUSTER_FORMAT = "plinth-sparsepipe-cluster/1"

_UNITS = {
    "": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*(/\s*s)?\s*$")


def parse_quantity(value: Any) -> Any:
    """'10 GB/s' -> 1e10, '12 GiB' -> 12884901888, 1e9 -> 1e9; anything else is left for pydantic to reject."""
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        unit = m.group(2).lower() if m else None
        if unit not in _UNITS:
            raise ValueError(f"expected a number of bytes (or bytes/s), e.g. 1e10 or '10 GB/s'; got {value!r}")
        return float(m.group(1)) * _UNITS[unit]
    return value


Quantity = Annotated[float, BeforeValidator(parse_quantity), Field(gt=0, allow_inf_nan=False)]


class TypeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(None, description="profile file, relative to the cluster file")
    speed: float = Field(1.0, gt=0, allow_inf_nan=False, description="times are divided by this")
    memory: Quantity | None = Field(None, description="device memory in bytes; unset: not checked")


class ServerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    intra_server_bandwidth: Quantity = Field(description="bytes/s between two devices of this server")
    devices: dict[str, Annotated[int, Field(ge=1)]] = Field(min_length=1, description="device type -> count")


class ClusterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["plinth-sparsepipe-cluster/1"] = CLUSTER_FORMAT
    name: str | None = None
    inter_server_bandwidth: Quantity | None = Field(None, description="bytes/s between servers")
    types: dict[str, TypeSpec] = Field(min_length=1)
    servers: list[ServerSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "ClusterFile":
        names = [s.name for s in self.servers]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"servers[{i}].name: {name!r} is used by two servers")
        for i, server in enumerate(self.servers):
            for t in server.devices:
                if t not in self.types:
                    declared = ", ".join(self.types)
                    raise ValueError(f"servers[{i}].devices.{t}: no device type {t!r} in [types] (declared: {declared})")
        if len(self.servers) > 1 and self.inter_server_bandwidth is None:
            raise ValueError("inter_server_bandwidth: required when there is more than one server")
        return self


# -- the loaded cluster -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    server: str
    type: str
    index: int  # among this server's devices of this type

    @property
    def id(self) -> str:
        return f"{self.server}/{self.type}/{self.index}"


@dataclass(frozen=True)
class Server:
    name: str
    intra_bandwidth: float
    devices: dict[str, int]  # type -> count, in file order


@dataclass(frozen=True)
class DeviceType:
    name: str
    profile: Profile  # already scaled by `speed`
    profile_path: Path
    speed: float
    memory: float | None


@dataclass(frozen=True)
class Cluster:
    name: str
    path: Path | None
    servers: tuple[Server, ...]
    inter_bandwidth: float | None
    types: dict[str, DeviceType]  # only the types some server uses

    @property
    def layer_names(self) -> list[str]:
        return next(iter(self.types.values())).profile.layer_names

    @property
    def batch_size(self) -> int:
        return next(iter(self.types.values())).profile.batch_size

    def devices(self) -> list[Device]:
        """Every device in cluster order: servers in file order, types in each server's order, then index."""
        return [Device(s.name, t, i) for s in self.servers for t, n in s.devices.items() for i in range(n)]

    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": str(self.path) if self.path else None,
            "inter_server_bandwidth": self.inter_bandwidth,
            "servers": [{"name": s.name, "intra_server_bandwidth": s.intra_bandwidth, "devices": dict(s.devices)}
                        for s in self.servers],
            "types": {t.name: {"profile": str(t.profile_path), "speed": t.speed, "memory": t.memory,
                               "model": t.profile.model, "measured_on": t.profile.meta.get("scaled_from",
                                                                                          t.profile.device_type)}
                      for t in self.types.values()},
        }


def load_cluster(path: Path | str, profiles: list[str] = (), overrides: list[str] = ()) -> Cluster:
    """Read a cluster file, apply `--set KEY=VALUE` overrides and `PROFILE` / `TYPE=PROFILE` arguments, load and
    cross-check every profile. Raises ClusterError / ProfileError naming the file and field."""
    path = Path(path)
    try:
        raw = tomllib.loads(read_text(path, "cluster", ClusterError))
    except tomllib.TOMLDecodeError as exc:
        raise ClusterError(f"{path}: TOML syntax error: {exc}") from None
    for text in overrides:
        _apply_override(raw, text, path)
    return cluster_from_dict(raw, path, profiles)


def cluster_from_dict(raw: dict[str, Any], path: Path, profiles: list[str] = ()) -> Cluster:
    if raw.get("format", CLUSTER_FORMAT) != CLUSTER_FORMAT:
        raise ClusterError(f"{path}: format: expected {CLUSTER_FORMAT!r}, got {raw.get('format')!r}")
    try:
        spec = ClusterFile.model_validate(raw)
    except ValidationError as exc:
        raise ClusterError(validation_message(path, exc)) from None

    used = list(dict.fromkeys(t for s in spec.servers for t in s.devices))
    given = _profile_arguments(profiles, used, list(spec.types), path)
    types: dict[str, DeviceType] = {}
    for t in used:
        t_spec = spec.types[t]
        if t in given:
            profile_path = given[t]
        elif t_spec.profile:
            profile_path = path.parent / t_spec.profile
        else:
            raise ClusterError(f"{path}: types.{t}.profile: missing; set it in the file or pass {t}=PROFILE.json")
        try:
            profile = load_profile(profile_path)
        except ProfileError as exc:
            where = "command line" if t in given else f"types.{t}.profile"
            raise ProfileError(f"{path}: {where}: {exc}") from None
        types[t] = DeviceType(t, profile.scaled(t_spec.speed, t) if t_spec.speed != 1.0 else profile,
                              profile_path, t_spec.speed, t_spec.memory)
    _check_profiles_agree(types, path)
    servers = tuple(Server(s.name, s.intra_server_bandwidth, dict(s.devices)) for s in spec.servers)
    return Cluster(spec.name or path.stem, path, servers, spec.inter_server_bandwidth, types)


def _profile_arguments(profiles: list[str], used: list[str], declared: list[str], path: Path) -> dict[str, Path]:
    """`TYPE=PATH` (or `TYPE1,TYPE2=PATH`) assigns a profile to types; a bare `PATH` goes to the type its
    `device_type` names. A type declared in [types] that no server uses is accepted and ignored."""
    given: dict[str, Path] = {}
    for arg in profiles:
        names, sep, file = arg.partition("=")
        if sep and not Path(arg).exists():
            for t in (x.strip() for x in names.split(",")):
                if t not in declared:
                    raise ClusterError(f"{arg}: {t!r} is not a device type of {path} ({', '.join(declared)})")
                if t in used:
                    given[t] = Path(file)
            continue
        t = load_profile(arg).device_type
        if t not in used:
            raise ClusterError(
                f"{arg}: its device_type {t!r} is not a type any server of {path} uses ({', '.join(used)}); "
                f"assign it with TYPE={arg}"
            )
        given[t] = Path(arg)
    return given


def _check_profiles_agree(types: dict[str, DeviceType], path: Path) -> None:
    """Profiles of one plan must describe the same model: same layers in order, batch size and parameter sizes."""
    first, *rest = types.values()
    a = first.profile
    for other in rest:
        b = other.profile
        where = f"{path}: types.{other.name}.profile ({other.profile_path}) vs types.{first.name}.profile"
        if b.batch_size != a.batch_size:
            raise ProfileError(f"{where}: batch_size {b.batch_size} != {a.batch_size}; profile both at one batch size")
        if b.layer_names != a.layer_names:
            i = next((i for i, (x, y) in enumerate(zip(a.layer_names, b.layer_names)) if x != y),
                     min(len(a.layers), len(b.layers)))
            got = b.layer_names[i] if i < len(b.layers) else "(end)"
            want = a.layer_names[i] if i < len(a.layers) else "(end)"
            raise ProfileError(f"{where}: layers[{i}] is {got!r}, expected {want!r}; profiles of different models")
        for i, (x, y) in enumerate(zip(a.layers, b.layers)):
            if abs(x.parameter_bytes - y.parameter_bytes) > 1e-6 * max(x.parameter_bytes, 1.0):
                raise ProfileError(
                    f"{where}: layers[{i}].parameter_bytes {y.parameter_bytes} != {x.parameter_bytes}; "
                    "profiles of different models"
                )


def _apply_override(raw: dict[str, Any], text: str, path: Path) -> None:
    """`--set types.tv.speed=0.5`, `--set inter_server_bandwidth="100 MB/s"`, `--set servers.node1.devices.tv=2`
    (a server by name or index). Values are read as TOML, else kept as a string."""
    key, sep, value_text = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not sep or not parts:
        raise ClusterError(f"--set {text!r}: expected KEY=VALUE, e.g. --set inter_server_bandwidth=1e9")
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            match = [x for i, x in enumerate(node) if str(i) == part or (isinstance(x, dict) and x.get("name") == part)]
            if not match:
                names = ", ".join(str(x.get("name", i)) for i, x in enumerate(node) if isinstance(x, dict))
                raise ClusterError(f"--set {text!r}: {path} has no {'.'.join(parts[:depth])} entry {part!r} ({names})")
            node = match[0]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ClusterError(f"--set {text!r}: {'.'.join(parts[:depth])} in {path} is not a table")
    if not isinstance(node, dict):
        raise ClusterError(f"--set {text!r}: {'.'.join(parts[:-1])} in {path} is not a table")
    node[parts[-1]] = value
