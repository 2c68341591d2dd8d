"""`plinth` command line: plugins, registry, validate, run, new-plugin, install/uninstall, plus verbs plugins add.

argparse keeps start-up fast (no heavy imports here); plugins add verbs through `plinth_register_commands`.
Repair commands (`--help`, `plugins`, `install`, `uninstall`) work even when a plugin is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from . import __version__
from .errors import PlinthError, StageFailedError


def _add_common_run_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument("pipeline", nargs="+", help="pipeline TOML file(s); each is reported")
    else:
        p.add_argument("pipeline", help="pipeline TOML file")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE",
        help="override a stage parameter (repeatable), e.g. --set sft.learning_rate=2e-5 --set sft.component=kto",
    )
    p.add_argument("--run-dir", help="run directory (default: [run].dir, else runs/<name>)")


def build_parser(plugins=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plinth",
        description="A plugin-based platform for training models: post-training language models, sparse 3D networks on point clouds. `plinth COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"plinth {__version__}")
    parser.add_argument("--strict-plugins", action="store_true", help="fail when any plugin fails to load")
    parser.add_argument("--registry", help="registry.toml to use (default: $PLINTH_REGISTRY, else ./registry.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins, their components, hooks and load errors")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("registry", help="show the effective component per slot, or set a default")
    p.add_argument("action", nargs="?", choices=["show", "set"], default="show")
    p.add_argument("assignments", nargs="*", metavar="SLOT=NAME", help="with `set`: e.g. trainer=kto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_registry)

    p = sub.add_parser("describe", help="show a component's parameters (types, defaults, descriptions)")
    p.add_argument("slot", choices=["generator", "trainer", "merger", "evaluator", "strategy"])
    p.add_argument("name", help="component name, e.g. kto")
    p.add_argument("--json", action="store_true", help="print the JSON schema of its Config")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("validate", help="validate pipeline files without running anything")
    _add_common_run_args(p, several=True)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a pipeline (skips unchanged stages, resumes interrupted ones)")
    _add_common_run_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="re-run STAGE even if unchanged")
    p.add_argument("--quiet", action="store_true", help="no stage lines, progress or tables; errors only")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("join", help="on another node: join a multi-node stage that `plinth run` is launching")
    p.add_argument("run_dir", help="the run directory (on a file system shared with the first node)")
    p.add_argument("stage", help="stage id, e.g. sft")
    p.add_argument("--node-rank", type=int, required=True)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the stage to start")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("new-plugin", help="scaffold a working plugin distribution with a passing test")
    p.add_argument("name", help="plugin name, e.g. my-trainer (distribution plinth-my-trainer)")
    p.add_argument("--slot", choices=["generator", "trainer", "merger", "evaluator"], default="trainer")
    p.add_argument("--dir", default=".", help="parent folder (default: current directory)")
    p.set_defaults(func=cmd_new_plugin)

    p = sub.add_parser("install", help="pip install plugins into plinth's own environment")
    p.add_argument("packages", nargs="+", help="names or paths, as pip takes them")
    p.add_argument("-e", "--editable", action="store_true", help="install a local folder in editable mode")
    p.add_argument("--upgrade", "-U", action="store_true")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("uninstall", help="pip uninstall plugins from plinth's environment")
    p.add_argument("packages", nargs="+")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_uninstall)

    if plugins is not None:
        plugins.hook.plinth_register_commands(subparsers=sub)
    for command in sub.choices.values():  # `plinth validate p.toml --registry r.toml` works too
        try:
            command.add_argument("--registry", default=argparse.SUPPRESS, help="registry.toml to use (as before the command)")
        except argparse.ArgumentError:  # a plugin's command defines its own
            pass
    return parser


# -- commands ---------------------------------------------------------------------------------------------
def cmd_plugins(args) -> int:
    from .plugins import load_plugins

    plugins = load_plugins(strict=False)
    infos = [p.to_json() for p in plugins.plugins]
    if args.json:
        print(json.dumps({"plugins": infos}, indent=2))
        return 0
    from .tables import print_table

    rows = []
    for p in infos:
        comps = "\n".join(f"{slot}: {', '.join(names)}" for slot, names in p["components"].items())
        hooks = ", ".join(h.removeprefix("plinth_") for h in p["hooks"])
        rows.append((p["name"], p["distribution"], p["version"], comps, hooks, p["error"] or ""))
    print_table("plinth plugins", ("plugin", "distribution", "version", "components", "hooks", "error"), rows)
    return 0


def cmd_registry(args) -> int:
    from .components import SLOTS
    from .plugins import load_plugins
    from .registry import find_registry, load_registry, set_default

    if args.action == "set":
        path = find_registry(args.registry) or Path("registry.toml")
        plugins = load_plugins()
        for item in args.assignments:
            if "=" not in item:
                raise PlinthError(f"registry set: expected SLOT=NAME, got {item!r}")
            slot, name = (s.strip() for s in item.split("=", 1))
            plugins.get(slot, name)  # unknown names get "did you mean" before the file is touched
            set_default(path, slot, name)
            print(f"{path}: [defaults] {slot} = \"{name}\"")
        return 0
    registry = load_registry(args.registry)
    plugins = load_plugins()
    rows = []
    for slot in SLOTS:
        name, source = registry.default_for(slot)
        entry = plugins.components[slot].get(name) if name else None
        rows.append({
            "slot": slot, "component": name, "source": source,
            "provided_by": entry.distribution if entry else None,
            "available": sorted(plugins.components[slot]),
        })
    if args.json:
        print(json.dumps({"registry": str(registry.path) if registry.path else None, "slots": rows}, indent=2))
        return 0
    from .tables import print_table, print_wrapped

    cells = []
    for r in rows:
        missing = r["component"] and not r["provided_by"]
        comp = f"[red]{r['component']} (not installed)[/red]" if missing else (r["component"] or "-")
        cells.append((r["slot"], comp, r["source"], r["provided_by"] or "", ", ".join(r["available"])))
    print_table(f"registry: {registry.path or 'none (built-in defaults)'}",
                ("slot", "default", "from", "provided by", "available"), cells)
    print_wrapped("Resolution order: --set STAGE.component > pipeline file > registry.toml > built-in default")
    return 0


def cmd_describe(args) -> int:
    from .plugins import load_plugins

    plugins = load_plugins()
    cls = plugins.get(args.slot, args.name)
    entry = plugins.entry(args.slot, args.name)
    schema = cls.Config.model_json_schema()
    if args.json:
        print(json.dumps(schema, indent=2))
        return 0
    from .fileparams import MARK
    from .tables import print_table, print_wrapped

    doc = (cls.__doc__ or "").strip().splitlines()
    rows = []
    for name, field in cls.Config.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        note = {"path": " (a file or folder, relative to the pipeline file)",
                "glob": " (files or glob patterns, relative to the pipeline file)",
                "path_or_name": " (a name, or a path relative to the pipeline file)"}.get(extra.get(MARK), "")
        rows.append((field.alias or name, type_text(field.annotation), default, (field.description or "") + note))
    print_table(f"{args.slot} '{args.name}' ({entry.distribution}): {doc[0] if doc else ''}",
                ("parameter", "type", "default", "description"), rows)
    outputs = dict(cls.outputs) if isinstance(cls.outputs, dict) else {n: "" for n in cls.outputs}
    kinds = cls.input_kinds or {}
    ins = ", ".join(f"{k} ({v if isinstance(v, str) else ' | '.join(v)})" for k, v in kinds.items())
    outs = ", ".join(f"{k} ({v})" if v else k for k, v in outputs.items())
    print_wrapped(f"inputs: {ins or '-'}; required: {', '.join(cls.required_inputs) or '-'}")
    print_wrapped(f"outputs: {outs or '-'}")
    return 0


def type_text(annotation) -> str:
    """A parameter's type as a user writes it: Literal choices spelled out, Optional as `| None`."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_text(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _plan(args):
    from .pipeline import build_plan
    from .plugins import load_plugins
    from .registry import check_required, load_registry

    registry = load_registry(args.registry)
    check_required(registry)
    plugins = load_plugins()
    return build_plan(args.pipeline, plugins, registry, overrides=args.overrides, run_dir=args.run_dir), plugins


def cmd_validate(args) -> int:
    """Each file is validated and reported on its own; the exit status is 2 when any is invalid."""
    from .errors import ConfigError
    from .pipeline import build_plan
    from .plugins import load_plugins
    from .registry import check_required, load_registry

    registry = load_registry(args.registry)
    check_required(registry)
    plugins = load_plugins()
    failed = []
    for path in args.pipeline:
        try:
            plan = build_plan(path, plugins, registry, overrides=args.overrides, run_dir=args.run_dir)
        except ConfigError as exc:
            print(f"plinth: error: {exc}", file=sys.stderr)
            failed.append(path)
            continue
        print(f"{path}: valid — {len(plan.stages)} stage(s), run directory {plan.run_dir}")
        for st in plan.stages:
            print(f"  {st.id}: {st.slot} '{st.component_name}' ({st.distribution}), strategy '{st.strategy_name}'")
    if len(args.pipeline) > 1:
        print(f"{len(args.pipeline) - len(failed)} of {len(args.pipeline)} pipeline files valid"
              + (f"; invalid: {', '.join(failed)}" if failed else ""), file=sys.stderr if failed else sys.stdout)
    return 2 if failed else 0


def cmd_run(args) -> int:
    from .runner import Run

    from .pipeline import check_stage_ids

    plan, plugins = _plan(args)
    check_stage_ids(plan, args.force)
    # the stage table and "run complete" are printed by the built-in plinth_run_finished hook, before the report
    Run(plan, plugins, force=args.force, echo=not args.quiet).execute()
    return 0


def cmd_join(args) -> int:
    from .runner import join

    return join(Path(args.run_dir), args.stage, args.node_rank, timeout=args.timeout)


def cmd_new_plugin(args) -> int:
    from .scaffold import new_plugin

    path = new_plugin(args.name, slot=args.slot, parent=Path(args.dir))
    print(f"created {path}\nnext: plinth install -e {path} && pytest {path}")
    return 0


def _pip(*pip_args: str) -> int:
    cmd = [sys.executable, "-m", "pip", *pip_args]
    print("$ " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def cmd_install(args) -> int:
    extra = ["--upgrade"] if args.upgrade else []
    if args.editable:
        return _pip("install", *extra, *[x for p in args.packages for x in ("-e", p)])
    return _pip("install", *extra, *args.packages)


def cmd_uninstall(args) -> int:
    return _pip("uninstall", *(["-y"] if args.yes else []), *args.packages)


# -- entry point ------------------------------------------------------------------------------------------
def _command_word(argv: list[str]) -> str:
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--registry":
            skip = True
        elif a in ("-h", "--help") or not a.startswith("-"):
            return a
    return "--help"


REPAIR_COMMANDS = {"plugins", "install", "uninstall", "new-plugin", "-h", "--help"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--strict-plugins" in argv:
        os.environ["PLINTH_STRICT_PLUGINS"] = "1"
    import logging
    import warnings

    warnings.formatwarning = lambda message, *a, **k: f"{message}\n"
    handler = logging.StreamHandler(sys.stderr)  # plinth's and plugins' loggers ("plinth.*"), one style
    handler.setFormatter(logging.Formatter("[plinth] %(message)s"))
    logging.getLogger("plinth").addHandler(handler)
    if "--quiet" in argv:
        logging.getLogger("plinth").setLevel(logging.ERROR)
    try:
        plugins = None
        if argv != ["--version"]:
            from .plugins import load_plugins

            first = _command_word(argv)
            # repair commands load plugins leniently, so a broken plugin can still be listed and removed
            plugins = load_plugins(strict=False) if first in REPAIR_COMMANDS else load_plugins()
        parser = build_parser(plugins)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except StageFailedError as exc:
        print(f"plinth: {exc}", file=sys.stderr)
        return 1
    except PlinthError as exc:
        print(f"plinth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a run (RunInterrupted)
        signum = getattr(exc, "signum", 2)
        print(f"plinth: interrupted ({'SIGTERM' if signum == 15 else 'Ctrl-C'}); `plinth run` again resumes "
              "from the last completed stage", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # `plinth describe ... | head`
        sys.stderr.close()
        return 0
    except (OSError, MemoryError, ImportError) as exc:  # the environment, outside any stage (state files, plugins)
        from .failures import environment_problem

        problem = environment_problem(exc)
        if problem is None:
            raise
        print(f"plinth: error: {problem}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
