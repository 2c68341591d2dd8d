"""What `plinth validate` checks across stages, once every config has parsed: the wiring and the files.

- stage names: no `@` (the runner names rounds `stage@k`) and no `.` (references are `stage.output`);
- every input reference names an earlier stage and an output that stage declares, of a kind the consumer
  accepts; input names the consumer does not read are refused;
- external inputs (`{ path = ... }`) exist; their kind, when not written, is the one the consumer reads;
- file parameters (`plinth.fileparams`) exist or match;
- each component's own cheap checks (`Component.preflight`): model names, first dataset rows, merge shapes.

Every problem becomes one line "FILE: stages.NAME.FIELD: problem"; all are collected before any is raised.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .components import Component

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def check_stage_names(path: Path, names: list[str]) -> list[str]:
    errors = []
    for name in names:
        if "@" in name:
            errors.append(f"{path}: stages.{name}: '@' is reserved for the rounds the runner names (stage@k); "
                          "rename the stage")
        elif not NAME.match(name):
            errors.append(f"{path}: stages.{name}: stage names use letters, digits, '_' and '-' only")
    return errors


def _accepted(cls: type[Component], key: str) -> tuple[str, ...] | None:
    kinds = cls.input_kinds
    if kinds is None:
        return None
    value = kinds.get(key)
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def check_inputs(path: Path, spec: Any, built: dict[str, Any], classes: dict[str, type[Component]]) -> list[str]:
    """References, kinds and external paths of every stage's inputs (`classes`: each stage's component class,
    also where its config did not validate, so its wiring is still checked)."""
    from .pipeline import ExternalInput

    order = list(spec.stages)
    errors: list[str] = []
    for name, st in spec.stages.items():
        consumer = classes.get(name)
        for key, value in st.inputs.items():
            where = f"{path}: stages.{name}.inputs.{key}"
            accepted = _accepted(consumer, key) if consumer is not None else None
            if accepted == ():
                errors.append(f"{where}: component '{st.component or consumer.__name__}' reads no input '{key}'; "
                              f"its inputs are {', '.join(consumer.input_kinds) or 'none'}")
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, ExternalInput):
                    err = _check_external(v, path.parent, accepted)
                else:
                    err = _check_ref(v, name, order, built, spec, accepted)
                if err:
                    errors.append(f"{where}: {err}")
    return errors


def _kind_error(kind: str, accepted: tuple[str, ...] | None, what: str) -> str | None:
    if not kind or not accepted or kind in accepted:
        return None
    return f"{what} is a '{kind}' artifact; this input takes {' or '.join(repr(k) for k in accepted)}"


def _check_external(ext: Any, base: Path, accepted: tuple[str, ...] | None) -> str | None:
    if "kind" not in ext.model_fields_set and accepted and len(accepted) == 1:
        ext.kind = accepted[0]  # `{ path = "data.jsonl" }` feeding a dataset input is a dataset
    p = external_path(ext, base)
    if not p.exists():
        return f"path {p} does not exist"
    return _kind_error(ext.kind, accepted, f"{{ path = '{ext.path}' }}")


def external_path(ext: Any, base: Path) -> Path:
    p = Path(ext.path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _check_ref(ref: str, stage: str, order: list[str], built: dict[str, Any], spec: Any,
               accepted: tuple[str, ...] | None) -> str | None:
    if "." not in ref:
        return f"'{ref}' must be 'stage.output' (e.g. 'sft.model') or a table {{ path = ..., kind = ... }}"
    src, out = ref.split(".", 1)
    if src not in spec.stages:
        return f"no stage '{src}' (stages are {', '.join(order)})"
    if order.index(src) >= order.index(stage):
        return f"stage '{src}' does not run before '{stage}'; inputs may only name earlier stages"
    if src not in built:
        return None  # its own errors are reported already
    producer = built[src]
    declared = producer.component.declared_outputs(list(spec.stages[src].inputs))
    if declared and out not in declared:
        return f"stage '{src}' ({producer.name}) has no output '{out}'; it produces {', '.join(declared)}"
    return _kind_error(declared.get(out, ""), accepted, f"'{ref}'")


def check_files(path: Path, name: str, built: Any) -> list[str]:
    """Missing file parameters, then the component's own cheap checks."""
    errors = []
    for prefix, params in (("", built.files), ("strategy.", built.strategy_files)):
        for fp in params:
            problem = fp.problem()
            if problem:
                errors.append(f"{path}: stages.{name}.{prefix}{fp.where}: {problem}")
    return errors


def check_component(path: Path, name: str, st: Any, built: Any) -> list[str]:
    from .pipeline import ExternalInput

    known: dict[str, list[Path | None]] = {}
    for key, value in st.inputs.items():
        items = value if isinstance(value, list) else [value]
        known[key] = [external_path(v, path.parent) if isinstance(v, ExternalInput) else None for v in items]
    try:
        problems = built.component.preflight(known)
    except Exception as exc:  # noqa: BLE001 - a plugin's check must not turn validate into a traceback
        problems = [f"the component's check failed: {type(exc).__name__}: {exc}"]
    return [f"{path}: stages.{name}.{p}" for p in problems]


def check_feed(path: Path, spec: Any, built: dict[str, Any], classes: dict[str, type[Component]]) -> list[str]:
    """`[repeat] feed = { "stage.input" = "stage.output" }`: the output is declared and fits the input's kind."""
    if spec.repeat is None:
        return []
    errors = []
    for target, source in spec.repeat.feed.items():
        if target.count(".") != 1 or source.count(".") != 1:
            continue  # reported by the repeat checks
        (dst, key), (src, out) = target.split("."), source.split(".")
        if dst not in spec.stages or src not in spec.stages:
            continue
        where = f"{path}: repeat.feed.{target}"
        accepted = _accepted(classes[dst], key) if dst in classes else None
        if accepted == ():
            errors.append(f"{where}: component '{spec.stages[dst].component or dst}' reads no input '{key}'")
            continue
        if src in built:
            declared = built[src].component.declared_outputs(list(spec.stages[src].inputs))
            if declared and out not in declared:
                errors.append(f"{where}: stage '{src}' ({built[src].name}) has no output '{out}'; it produces "
                              f"{', '.join(declared)}")
                continue
            err = _kind_error(declared.get(out, ""), accepted, f"'{source}'")
            if err:
                errors.append(f"{where}: {err}")
    return errors
