"""Pipeline files: parse, apply `--set` overrides, validate everything, and expand into an ordered plan.

A pipeline is TOML. Each stage is a table under `stages`; its parameters sit inline beside the reserved keys
`slot`, `component`, `inputs` and `strategy`:

    [run]
    name = "sft-kto"

    [stages.sft]
    slot = "trainer"
    component = "sft"
    model = "smollm2-135m-instruct"
    inputs = { dataset = "data.sft" }

    [repeat]                      # optional: continuous post-training
    stages = ["data", "sft"]
    rounds = 3
    feed = { "data.student" = "sft.model" }   # round r's data.student comes from round r-1's sft.model

Validation happens before anything runs: TOML syntax (with line), structure, every component's Config, every
strategy's Config, input references, required plugins. Errors name the file, the stage and the field.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import fileparams, validate
from .artifacts import Artifact
from .components import SLOTS, Component, Strategy
from .errors import ConfigError, UnknownComponentError
from .plugins import PluginManager
from .registry import Registry

RESERVED = ("slot", "component", "inputs", "strategy")


class ExternalInput(BaseModel):
    """An input that no stage produced: a file or folder given by path."""

    model_config = ConfigDict(extra="forbid")
    path: str
    kind: str = "model"
    label: str | None = None


InputValue = str | ExternalInput
InputSpec = InputValue | list[InputValue]


class RunSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$",
        description="default: the pipeline file's name without .toml (so two files never share runs/run)",
    )
    dir: str | None = Field(
        None, description="run directory, relative to the pipeline file; default runs/<name> in the current directory"
    )


class RepeatSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[str] = Field(min_length=1)
    rounds: int = Field(ge=1)
    feed: dict[str, str] = Field(default_factory=dict)


class StageSection(BaseModel):
    model_config = ConfigDict(extra="allow")
    slot: str
    component: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    strategy: str | dict[str, Any] | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PipelineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: RunSection = Field(default_factory=RunSection)
    stages: dict[str, StageSection] = Field(min_length=1)
    repeat: RepeatSection | None = None


@dataclass
class PlannedStage:
    """One stage instance ready to run: the component built from its validated config."""

    id: str  # "sft", or "sft@2" inside a repeat group
    name: str
    round: int
    slot: str
    component_name: str
    component: Component
    strategy_name: str
    strategy: Strategy
    strategy_params: dict[str, Any]
    params: dict[str, Any]
    inputs: dict[str, Any]  # name -> ("ref", stage_id, output) | ("path", ExternalInput) | list of those
    distribution: str = ""
    version: str = ""
    files: list[fileparams.FileParam] = field(default_factory=list)  # file parameters of component and strategy

    def config_hash(self) -> str:
        """Component, version and both configs; file parameters count by their content, not their path."""
        resolved = {fp.value for fp in self.files if fp.files()}
        payload = {
            "component": self.component_name,
            "distribution": self.distribution,
            "version": self.version,
            "config": _without(self.component.config.model_dump(mode="json"), resolved),
            "strategy": self.strategy_name,
            "strategy_config": _without(self.strategy.config.model_dump(mode="json"), resolved),
        }
        if self.files:
            payload["files"] = fileparams.digest(self.files)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "round": self.round,
            "slot": self.slot,
            "component": self.component_name,
            "distribution": self.distribution,
            "version": self.version,
            "config": self.component.config.model_dump(mode="json"),
            "strategy": {"name": self.strategy_name, **self.strategy.config.model_dump(mode="json")},
            "inputs": _inputs_json(self.inputs),
        }


@dataclass
class Plan:
    path: Path
    spec: PipelineFile
    run_dir: Path
    stages: list[PlannedStage] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def stage(self, stage_id: str) -> PlannedStage:
        for st in self.stages:
            if st.id == stage_id:
                return st
        raise KeyError(stage_id)


def _without(data: Any, paths: set[str]) -> Any:
    """`data` with every string that is a resolved file path replaced by a marker (its content is hashed)."""
    if isinstance(data, dict):
        return {k: _without(v, paths) for k, v in data.items()}
    if isinstance(data, list):
        return [_without(v, paths) for v in data]
    return "<file>" if isinstance(data, str) and data in paths else data


@dataclass
class _Built:
    """A stage whose component and strategy configs validated."""

    name: str
    component: Component
    strategy_name: str
    strategy: Strategy
    strategy_params: dict[str, Any]
    entry: Any
    params: dict[str, Any]
    files: list[fileparams.FileParam]
    strategy_files: list[fileparams.FileParam]


def _inputs_json(inputs: dict[str, Any]) -> dict[str, Any]:
    def one(v: Any) -> Any:
        if v[0] == "ref":
            return f"{v[1]}.{v[2]}"
        return v[1].model_dump()

    return {k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in inputs.items()}


# -- parsing ------------------------------------------------------------------------------------------------
def read_toml(path: Path, what: str = "pipeline file") -> dict[str, Any]:
    """A TOML file's tables; every way of not being one (missing, a folder, not UTF-8, bad syntax) is a
    ConfigError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give a {what} (.toml)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`stage.param=value` -> (["stages", stage, param...], value). The value is read as TOML (numbers, bools,
    lists, quoted strings), falling back to a plain string; `run.x=...` and `repeat.x=...` address those tables."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set sft.learning_rate=2e-5")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise ConfigError(f"--set {text!r}: the key must name a stage and a parameter, e.g. sft.learning_rate")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if parts[0] in ("run", "repeat"):
        return parts, value
    return ["stages", *parts], value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] == "stages" and parts[1] not in data.get("stages", {}):
            raise ConfigError(
                f"--set {text!r}: no stage '{parts[1]}'; stages are {', '.join(data.get('stages', {})) or 'none'}"
            )
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                if p == "strategy" and isinstance(nxt, str):  # `--set sft.strategy.nproc_per_node=2`
                    nxt = node[p] = {"name": nxt}
                else:
                    raise ConfigError(f"--set {text!r}: '{p}' is not a table")
            node = nxt
        node[parts[-1]] = value
    return data


_UNION_TAGS = {"str", "int", "float", "bool", "ExternalInput", "constrained-float", "function-after"}


def _format_validation(path: Path, where: str, exc: ValidationError) -> str:
    """One line per field; the alternatives of a union ("str | table") joined on that field's line."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        parts = [str(x) for x in err["loc"] if not (isinstance(x, str) and (x in _UNION_TAGS or "[" in x))]
        loc = ".".join(parts)
        field_ = f"{where}.{loc}" if where and loc else (where or loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if where.startswith("stages."):
                msg += " (check the spelling; `plinth validate` lists each stage's component)"
        if msg not in by_field.setdefault(field_, []):
            by_field[field_].append(msg)
    return "\n".join(f"{path}: {f}: {' | or: '.join(msgs)}" for f, msgs in by_field.items())


# -- validation and planning ----------------------------------------------------------------------------------
def build_plan(
    path: str | Path,
    plugins: PluginManager,
    registry: Registry,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
) -> Plan:
    """Validate a pipeline file completely and return its ordered plan; raises ConfigError listing every problem."""
    path = Path(path)
    raw = apply_overrides(read_toml(path), overrides or [])
    try:
        spec = PipelineFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, "", exc)) from None
    if spec.run.name is None:
        spec.run.name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "run"

    errors: list[str] = validate.check_stage_names(path, list(spec.stages))
    order = list(spec.stages)
    built: dict[str, _Built] = {}
    classes: dict[str, type[Component]] = {}  # every stage whose component exists, even with a bad config
    for name, st in spec.stages.items():
        where = f"stages.{name}"
        if st.slot not in SLOTS or st.slot == "strategy":
            slots = [s for s in SLOTS if s != "strategy"]
            errors.append(f"{path}: {where}.slot: unknown slot '{st.slot}'; slots are {', '.join(slots)}")
            continue
        comp_name = st.component or registry.default_for(st.slot)[0]
        if comp_name is None:
            errors.append(
                f"{path}: {where}: no component named and registry.toml sets no default {st.slot}; "
                f"add component = \"...\" (available: {', '.join(plugins.components[st.slot]) or 'none'})"
            )
            continue
        try:
            cls = plugins.get(st.slot, comp_name)
        except UnknownComponentError as exc:
            errors.append(f"{path}: {where}.component: {exc}")
            continue
        classes[name] = cls
        params = copy.deepcopy(st.params)
        files = fileparams.resolve_raw(cls.Config, params, path.parent)
        try:
            component = cls(cls.Config.model_validate(params))
        except ValidationError as exc:
            errors.append(_format_validation(path, where, exc))
            continue
        strat_name, strat_params = _strategy_spec(st.strategy, registry)
        try:
            strat_cls = plugins.get("strategy", strat_name)
            strategy_files = fileparams.resolve_raw(strat_cls.Config, strat_params, path.parent)
            strategy = strat_cls(strat_cls.Config.model_validate(strat_params))
        except UnknownComponentError as exc:
            errors.append(f"{path}: {where}.strategy: {exc}")
            continue
        except ValidationError as exc:
            errors.append(_format_validation(path, f"{where}.strategy", exc))
            continue
        missing = [r for r in cls.required_inputs if r not in st.inputs]
        if missing:
            errors.append(f"{path}: {where}.inputs: component '{comp_name}' needs input(s) {missing}")
        entry = plugins.entry(st.slot, comp_name)
        built[name] = _Built(comp_name, component, strat_name, strategy, strat_params, entry, params, files,
                             strategy_files)

    errors.extend(validate.check_inputs(path, spec, built, classes))
    errors.extend(validate.check_feed(path, spec, built, classes))
    for name, b in built.items():
        file_errors = validate.check_files(path, name, b)
        errors.extend(file_errors or validate.check_component(path, name, spec.stages[name], b))

    rounds, group = 1, []
    if spec.repeat is not None:
        rounds, group = spec.repeat.rounds, spec.repeat.stages
        errors.extend(_check_repeat(path, spec, order))

    if errors:
        raise ConfigError("\n".join(errors))

    if run_dir is None:
        run_dir = Path(spec.run.dir) if spec.run.dir else Path("runs") / spec.run.name
        if not run_dir.is_absolute():
            run_dir = path.parent / run_dir if spec.run.dir else Path.cwd() / run_dir
    plan = Plan(path=path, spec=spec, run_dir=Path(run_dir).resolve(), raw=raw)
    plan.stages = _expand(spec, built, order, rounds, group)
    return plan


def _strategy_spec(value: str | dict[str, Any] | None, registry: Registry) -> tuple[str, dict[str, Any]]:
    if value is None:
        return registry.default_for("strategy")[0] or "single", {}
    if isinstance(value, str):
        return value, {}
    params = dict(value)
    name = params.pop("name", None) or registry.default_for("strategy")[0] or "single"
    return name, params


def _check_repeat(path: Path, spec: PipelineFile, order: list[str]) -> list[str]:
    rep = spec.repeat
    assert rep is not None
    errors = []
    unknown = [s for s in rep.stages if s not in spec.stages]
    if unknown:
        return [f"{path}: repeat.stages: unknown stage(s) {unknown}"]
    idx = sorted(order.index(s) for s in rep.stages)
    if idx != list(range(idx[0], idx[0] + len(idx))):
        errors.append(f"{path}: repeat.stages: the repeated stages must be consecutive in the file")
    for target, source in rep.feed.items():
        if target.count(".") != 1 or source.count(".") != 1:
            errors.append(f"{path}: repeat.feed: '{target}' = '{source}' must both be 'stage.name'")
            continue
        if target.split(".")[0] not in rep.stages or source.split(".")[0] not in rep.stages:
            errors.append(f"{path}: repeat.feed: '{target}' = '{source}' must name stages inside repeat.stages")
    return errors


def _expand(spec: PipelineFile, built: dict[str, Any], order: list[str], rounds: int, group: list[str]) -> list:
    """Stage instances in run order; stages of the repeat group run once per round with ids `name@r`."""
    feed = spec.repeat.feed if spec.repeat else {}
    last_round = {s: rounds for s in group}

    def stage_id(name: str, rnd: int) -> str:
        return f"{name}@{rnd}" if name in group else name

    def resolve(name: str, key: str, v: InputValue, rnd: int) -> Any:
        if isinstance(v, ExternalInput):
            return ("path", v)
        src, out = v.split(".", 1)
        if name in group and rnd > 1 and f"{name}.{key}" in feed:
            fsrc, fout = feed[f"{name}.{key}"].split(".", 1)
            return ("ref", stage_id(fsrc, rnd - 1), fout)
        if src in group:
            src_round = rnd if name in group else last_round[src]
            return ("ref", stage_id(src, src_round), out)
        return ("ref", src, out)

    def instance(name: str, rnd: int) -> PlannedStage:
        st = spec.stages[name]
        b = built[name]
        inputs = {
            k: [resolve(name, k, x, rnd) for x in v] if isinstance(v, list) else resolve(name, k, v, rnd)
            for k, v in st.inputs.items()
        }
        return PlannedStage(
            id=stage_id(name, rnd), name=name, round=rnd, slot=st.slot, component_name=b.name,
            component=b.component, strategy_name=b.strategy_name, strategy=b.strategy,
            strategy_params=b.strategy_params, params=b.params, inputs=inputs, distribution=b.entry.distribution,
            version=_dist_version(b.entry), files=b.files + b.strategy_files,
        )

    planned: list[PlannedStage] = []
    i = 0
    while i < len(order):
        name = order[i]
        if group and name == _first(group, order):
            members = [s for s in order if s in group]
            for rnd in range(1, rounds + 1):
                planned.extend(instance(m, rnd) for m in members)
            i += len(members)
            continue
        planned.append(instance(name, 1))
        i += 1
    return planned


def _first(group: list[str], order: list[str]) -> str:
    return min(group, key=order.index)


def _dist_version(entry: Any) -> str:
    from importlib import metadata

    try:
        return metadata.version(entry.distribution)
    except metadata.PackageNotFoundError:
        return ""


def resolve_inputs(stage: PlannedStage, outputs: dict[str, dict[str, Artifact]], base: Path) -> dict[str, Any]:
    """Turn a stage's input references into Artifacts, from the outputs recorded for earlier stages."""

    def one(v: Any) -> Artifact:
        if v[0] == "path":
            ext: ExternalInput = v[1]
            p = Path(ext.path).expanduser()
            if not p.is_absolute():
                p = (base / p).resolve()
            if not p.exists():
                raise ConfigError(f"stage '{stage.id}': input path {p} does not exist")
            meta = {"label": ext.label or p.name}
            return Artifact(kind=ext.kind, path=p, meta=meta)
        _, src, out = v
        produced = outputs.get(src, {})
        if out not in produced:
            raise ConfigError(
                f"stage '{stage.id}': input '{src}.{out}' was not produced; stage '{src}' gave "
                f"{sorted(produced) or 'nothing'}"
            )
        art = produced[out]
        meta = dict(art.meta)
        meta.setdefault("stage", src)
        meta["output"] = out
        meta["stage_id"] = src
        return Artifact(kind=art.kind, path=art.path, meta=meta)

    return {k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in stage.inputs.items()}


def check_stage_ids(plan: Plan, names: list[str], option: str = "--force") -> None:
    """Refuse stage names (as given to --force) that are neither a stage of the plan nor a round of one."""
    known = {s.id for s in plan.stages} | {s.name for s in plan.stages}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"{plan.path}: {option} {', '.join(unknown)}: no such stage; stages are "
            f"{', '.join(s.id for s in plan.stages)}"
        )
