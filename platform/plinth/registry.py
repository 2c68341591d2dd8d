"""registry.toml: the default component for each slot and the plugins a project requires.

    [defaults]
    trainer = "sft"
    strategy = "single"

    [plugins]
    required = ["plinth-sft>=0.1", "plinth-kto>=0.1"]

Which component a stage runs is decided in one place, in this order: `--set STAGE.component=...` on the command
line, then the stage's `component` in the pipeline file, then `[defaults]` here, then the built-in default
(only `strategy = "single"` has one). Entry-point order never decides anything.

The file is found at `--registry PATH`, else $PLINTH_REGISTRY, else ./registry.toml, else there is none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .components import SLOTS
from .errors import ConfigError

BUILTIN_DEFAULTS = {"strategy": "single"}


@dataclass
class Registry:
    path: Path | None
    defaults: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)

    def default_for(self, slot: str) -> tuple[str | None, str]:
        """(component name, where it came from) for a slot, before pipeline and command line are applied."""
        if slot in self.defaults:
            return self.defaults[slot], str(self.path)
        if slot in BUILTIN_DEFAULTS:
            return BUILTIN_DEFAULTS[slot], "built-in default"
        return None, "unset"


def find_registry(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"registry file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
        return path
    env = os.environ.get("PLINTH_REGISTRY")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"PLINTH_REGISTRY points to {path}, which does not exist")
        return path
    local = Path("registry.toml")
    return local if local.is_file() else None


def load_registry(explicit: str | Path | None = None) -> Registry:
    path = find_registry(explicit)
    if path is None:
        return Registry(path=None)
    from .pipeline import read_toml  # here: pipeline.py imports this module

    data = read_toml(path, "registry file")
    unknown = set(data) - {"defaults", "plugins"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; expected [defaults] and [plugins]")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table of slot = \"component\"")
    for slot, name in defaults.items():
        if slot not in SLOTS:
            raise ConfigError(f"{path}: [defaults] has unknown slot '{slot}'; slots are {', '.join(SLOTS)}")
        if not isinstance(name, str):
            raise ConfigError(f"{path}: [defaults].{slot} must be a component name (a string), got {name!r}")
    required = data.get("plugins", {}).get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ConfigError(f"{path}: [plugins].required must be a list of requirement strings like \"plinth-kto>=0.1\"")
    return Registry(path=path, defaults=dict(defaults), required=list(required))


def check_required(registry: Registry) -> None:
    """Raise one error listing every required plugin that is missing or too old."""
    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    for text in registry.required:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(f"'{text}' is not a valid requirement ({exc})")
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req} is not installed (pip install '{req}', or `plinth install {req.name}`)")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(f"{req} is required but {req.name} {installed} is installed")
    if problems:
        raise ConfigError(f"{registry.path}: required plugins not satisfied:\n  - " + "\n  - ".join(problems))


def set_default(path: Path, slot: str, name: str) -> None:
    """Edit `[defaults] slot = name` in place, keeping comments and layout (tomlkit)."""
    import tomlkit

    if slot not in SLOTS:
        raise ConfigError(f"unknown slot '{slot}'; slots are {', '.join(SLOTS)}")
    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    if "defaults" not in doc:
        doc["defaults"] = tomlkit.table()
    doc["defaults"][slot] = name  # type: ignore[index]
    from .rundir import write_text_atomic

    write_text_atomic(path, tomlkit.dumps(doc))
