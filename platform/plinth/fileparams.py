"""Component parameters that name files: declared once, resolved against the pipeline file, hashed by content.

A config field declares what its value is with `file_field(...)` instead of `Field(...)`:

    class MyConfig(ComponentConfig):
        task_file: str | None = file_field(None, description="JSONL of questions")           # a file or folder
        train: list[str] = file_field(kind="glob", description="PLY files or glob patterns")  # patterns
        model: str | None = file_field(None, kind="path_or_name", description="folder or alias")

kinds: "path" (a file or folder that must exist), "glob" (patterns that must each match a file), "path_or_name"
(a folder when one exists at that path, else a name such as a model alias, left as written).

The pipeline resolves relative values against the pipeline file's folder before the config is validated (so a
config's own validators read the right file, whatever the working directory), `plinth validate` reports missing
ones, and the stage's config hash holds each file's content hash instead of its path: editing a task file
re-runs the stage; moving the project does not.
"""

from __future__ import annotations

import glob as globlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

FileKind = Literal["path", "glob", "path_or_name"]
MARK = "plinth_file"


def file_field(default: Any = ..., *, kind: FileKind = "path", **kwargs: Any) -> Any:
    """`pydantic.Field` for a parameter naming files (str, str | None or list[str]); see the module docstring."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[MARK] = kind
    if "default_factory" in kwargs:
        return Field(json_schema_extra=extra, **kwargs)
    return Field(default, json_schema_extra=extra, **kwargs)


@dataclass
class FileParam:
    """One file-naming value of a stage's config: where it sits ("seeds.path") and what it resolved to."""

    where: str
    kind: str
    value: str  # absolute for paths and globs; as written for a name

    def files(self) -> list[Path]:
        """The files now behind the value (a folder counts as one entry); [] for a name or no match."""
        if self.kind == "glob":
            return sorted(Path(p) for p in globlib.glob(self.value, recursive=True) if Path(p).is_file())
        p = Path(self.value)
        return [p] if p.exists() else []

    def problem(self) -> str | None:
        """Why the value cannot be used, or None (names are checked by their component, not here)."""
        if self.kind == "glob":
            return None if self.files() else f"'{self.value}' matches no file"
        if self.kind == "path" and not Path(self.value).exists():
            return f"{self.value}: no such file or folder"
        return None

    def digest(self) -> str:
        from .artifacts import content_hash

        files = self.files()
        if not files:
            return f"name:{self.value}"
        return ",".join(content_hash(f) for f in files)


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel behind `Sub`, `Sub | None` or `Sub | bool` annotations (nested config sections)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_class(arg)
        if found is not None:
            return found
    return None


def resolve_raw(config_cls: type[BaseModel], raw: dict[str, Any], base: Path, where: str = "") -> list[FileParam]:
    """Rewrite the file parameters of a raw (TOML) params dict in place, relative to `base`; return them.

    Walks nested config sections; values of the wrong type are left for pydantic to report."""
    found: list[FileParam] = []
    for name, field in config_cls.model_fields.items():
        key = field.alias if field.alias and field.alias in raw else name
        if key not in raw:
            continue
        value = raw[key]
        loc = f"{where}{key}"
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        kind = extra.get(MARK)
        if kind:
            if isinstance(value, str):
                raw[key] = _resolve(value, kind, base)
                found.append(FileParam(loc, kind, raw[key]))
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                raw[key] = [_resolve(v, kind, base) for v in value]
                found += [FileParam(f"{loc}[{i}]", kind, v) for i, v in enumerate(raw[key])]
            continue
        sub = _model_class(field.annotation)
        if sub is not None and isinstance(value, dict):
            found += resolve_raw(sub, value, base, f"{loc}.")
    return found


def _resolve(value: str, kind: str, base: Path) -> str:
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = base / p
    if kind == "path_or_name" and not candidate.exists():
        return value  # a name (an alias, a hub id), not a path
    return str(candidate.resolve()) if kind == "path" or candidate.exists() else str(base.resolve() / p)


def digest(params: list[FileParam]) -> str:
    """One hash of every file parameter's current content, for the stage's config hash."""
    h = hashlib.sha256()
    for fp in params:
        h.update(f"{fp.where}={fp.digest()}\n".encode())
    return h.hexdigest()
