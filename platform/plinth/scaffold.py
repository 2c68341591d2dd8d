"""`plinth new-plugin NAME`: a working plugin distribution with a passing test, ready to grow.

The files are small string templates rather than a cookiecutter dependency: five files do not justify one.
A name that would collide with what is installed is refused before anything is written: a distribution
`plinth-NAME` (installing the scaffold would replace it, e.g. the shipped plinth-sft), an entry point NAME (pluggy
would refuse the second), or a component NAME in the slot (both would become unusable).
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from .errors import PlinthError

BASES = {"generator": "Generator", "trainer": "Trainer", "merger": "Merger", "evaluator": "Evaluator"}
METHODS = {"generator": "generate", "trainer": "train", "merger": "merge", "evaluator": "evaluate"}
HOOKS = {
    "generator": "plinth_register_generators",
    "trainer": "plinth_register_trainers",
    "merger": "plinth_register_mergers",
    "evaluator": "plinth_register_evaluators",
}

PYPROJECT = Template('''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "plinth-$name"
version = "0.1.0"
description = "A plinth $slot plugin"
requires-python = ">=3.11"
dependencies = ["plinth>=0.1"]

[project.entry-points.plinth]
$name = "$package.plugin"

[tool.setuptools]
packages = ["$package"]
''')

PLUGIN = Template('''"""Registers the $slot '$name' with plinth (found through the `plinth` entry-point group)."""

from plinth import hookimpl


@hookimpl
def $hook(register):
    # a lazy "module:Class" reference: plinth imports it only when a pipeline uses it, so `plinth --help` stays fast
    register("$name", "$package.component:$cls")
''')

COMPONENT = Template('''"""The $slot '$name'. Replace the body of `$method` with the real work."""

import json

from pydantic import Field

from plinth import Artifact, ComponentConfig, $base, StageContext


class $cls($base):
    """One line on what this $slot does and why you would pick it."""

    outputs = ("result",)

    class Config(ComponentConfig):
        message: str = Field("hello", description="an example parameter; set it in the pipeline stage")

    def $method(self, ctx: StageContext) -> dict[str, Artifact]:
        result = ctx.artifact("metrics", "result.json")
        payload = {"message": self.config.message, "inputs": sorted(ctx.inputs)}
        result.path.write_text(json.dumps(payload))
        ctx.log_metrics({"length": len(self.config.message)})
        return {"result": result}
''')

TEST = Template('''from plinth.plugins import load_plugins
from plinth.testing import make_context


def test_registered_and_runs(tmp_path):
    cls = load_plugins(refresh=True).get("$slot", "$name")
    outputs = cls({"message": "hi"}).run(make_context(tmp_path))
    assert outputs["result"].path.read_text() == '{"message": "hi", "inputs": []}'
''')

README = Template('''# plinth-$name

A plinth $slot plugin. Install it into plinth's environment and select it in a pipeline stage or as the default
for its slot:

    plinth install -e .
    plinth registry set $slot=$name
    pytest tests
''')


def new_plugin(name: str, slot: str = "trainer", parent: Path = Path(".")) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise PlinthError(f"plugin name {name!r}: use lower-case letters, digits and dashes, e.g. my-trainer")
    if slot not in BASES:
        raise PlinthError(f"unknown slot '{slot}'; choose one of {', '.join(BASES)}")
    root = Path(parent) / f"plinth-{name}"
    if root.exists():
        raise PlinthError(f"{root} already exists; choose another name or --dir")
    clash = _clash(name, slot)
    if clash:
        raise PlinthError(f"plugin name '{name}': {clash}; choose another name")
    package = "plinth_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + BASES[slot]
    values = dict(
        name=name, slot=slot, package=package, cls=cls, base=BASES[slot], method=METHODS[slot], hook=HOOKS[slot]
    )
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": Template('"""plinth-$name: a plinth $slot plugin."""\n'),
        f"{package}/plugin.py": PLUGIN,
        f"{package}/component.py": COMPONENT,
        "tests/test_plugin.py": TEST,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values), encoding="utf-8")
    return root


def _clash(name: str, slot: str) -> str | None:
    """What an installed plugin already holds under this name, or None."""
    from importlib import metadata

    from .plugins import GROUP, load_plugins

    dist_name = f"plinth-{name}"
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        return (f"the distribution {dist_name} {dist.version} is installed, and installing the new one would "
                "replace it")
    for ep in metadata.entry_points(group=GROUP):
        if ep.name == name:
            owner = ep.dist.name if ep.dist is not None else "?"
            return f"the entry point '{name}' in group '{GROUP}' belongs to {owner}"
    entry = load_plugins(strict=False).components.get(slot, {}).get(name)
    if entry is not None:
        return f"{slot} '{name}' is already registered by {entry.distribution}"
    return None
