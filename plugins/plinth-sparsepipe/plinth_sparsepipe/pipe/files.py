"""Reading the planner's files (profile, cluster, plan) with errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plinth.errors import ConfigError


class ProfileError(ConfigError):
    """A profile file is missing, not JSON, or breaks the profile format."""


class ClusterError(ConfigError):
    """A cluster file is missing, not TOML, or breaks the cluster format."""


class PlanFileError(ConfigError):
    """A plan file is missing, not JSON, or breaks the plan format."""


def field_path(loc: tuple) -> str:
    """('layers', 3, 'forward_s') -> 'layers[3].forward_s' (how a user finds the spot in the file)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_message(path: Path | str, exc) -> str:
    """One line per problem of a pydantic ValidationError: `FILE: FIELD: problem`."""
    lines = []
    for err in exc.errors():
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        where = field_path(tuple(err["loc"]))
        lines.append(f"{path}: {where}: {msg}" if where else f"{path}: {msg}")
    return "\n".join(lines)


def read_text(path: Path, what: str, error: type[ConfigError]) -> str:
    """The file's text, or `error` saying which file could not be read and why."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} file: {exc}") from None


def read_json(path: Path, what: str, error: type[ConfigError]) -> Any:
    try:
        return json.loads(read_text(path, what, error))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def validate(model: type[BaseModel], data: Any, fmt: str, where: Path | str, error: type[ConfigError]):
    """`data` as a `model`, after checking its `format` tag (so a wrong file says so before its fields do)."""
    got = data.get("format") if isinstance(data, dict) else type(data).__name__
    if got != fmt:
        raise error(f"{where}: format: expected {fmt!r}, got {got!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(validation_message(where, exc)) from None
