"""Hook specifications: the whole plugin surface of plinth.

Plugins implement any of these with `@plinth.hookimpl` and expose the module (or object) under the
`plinth` entry-point group. Like pytest, an implementation may accept fewer arguments than the spec offers,
so specs can grow without breaking plugins.

Slot hooks hand the plugin a `register(name, component)` callback; `component` is the class, or better a lazy
reference "package.module:ClassName" that plinth imports only when a pipeline uses it (so `plinth --help` and
`plinth plugins` never pay for a plugin's imports). Event hooks observe runs: a plugin's implementation that
raises is reported (once per hook) and ignored, so a broken logger or dashboard never stops a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from .artifacts import Artifact
    from .components import Component
    from .context import StageContext
    from .runner import Run

hookspec = pluggy.HookspecMarker("plinth")
hookimpl = pluggy.HookimplMarker("plinth")

Register = Callable[[str, "type[Component] | str"], None]


# -- slots ------------------------------------------------------------------------------------------------
@hookspec
def plinth_register_generators(register: Register) -> None:
    """Register data generators (subclasses of `plinth.Generator`): `register("teacher", TeacherGenerator)`."""


@hookspec
def plinth_register_trainers(register: Register) -> None:
    """Register trainers (subclasses of `plinth.Trainer`): `register("kto", KTOTrainer)`."""


@hookspec
def plinth_register_mergers(register: Register) -> None:
    """Register model mergers (subclasses of `plinth.Merger`): `register("ties", TiesMerger)`."""


@hookspec
def plinth_register_evaluators(register: Register) -> None:
    """Register evaluators (subclasses of `plinth.Evaluator`): `register("exact-match", ExactMatch)`."""


@hookspec
def plinth_register_strategies(register: Register) -> None:
    """Register parallel strategies (subclasses of `plinth.Strategy`): `register("deepspeed", DeepSpeed)`."""


@hookspec
def plinth_register_chat_backends(register: Callable[[str, type], None]) -> None:
    """Register chat back ends (subclasses of `plinth.lm.chat.ChatBackend`) that any component may use to talk to
    a model — the teacher generator and the judge evaluator share them without importing each other."""


# -- events -----------------------------------------------------------------------------------------------
@hookspec
def plinth_run_started(run: "Run") -> None:
    """A run begins (after validation, before the first stage)."""


@hookspec
def plinth_run_finished(run: "Run", status: str) -> None:
    """A run ends; `status` is "complete", "failed" or "interrupted" (Ctrl-C, SIGTERM)."""


@hookspec
def plinth_stage_started(run: "Run", stage: str) -> None:
    """A stage is about to run (not called for stages skipped as unchanged)."""


@hookspec
def plinth_stage_finished(run: "Run", stage: str, status: str, outputs: "dict[str, Artifact]") -> None:
    """A stage ended: `status` is "complete", "skipped" (unchanged since a previous run), "failed" or
    "interrupted"."""


@hookspec
def plinth_metrics_logged(ctx: "StageContext", metrics: dict[str, Any], step: int | None) -> None:
    """A component logged metrics (loss, rewards, scores). Called in the main process only."""


@hookspec
def plinth_progress(
    ctx: "StageContext", description: str, done: int, total: int | None, status: str, info: dict[str, Any]
) -> None:
    """Progress of a long loop: `status` is "start", "update" or "end"; `info` holds extra numbers to show."""


@hookspec
def plinth_artifact_written(ctx: "StageContext", name: str, artifact: "Artifact") -> None:
    """A stage produced an output artifact (called once per output after the stage completes)."""


# -- command line ---------------------------------------------------------------------------------------------
@hookspec
def plinth_register_commands(subparsers: Any) -> None:
    """Add `plinth` subcommands: `subparsers` is argparse's; set `func=callable(args) -> int` on the parser
    with `parser.set_defaults(func=...)` (as simonw/llm's register_commands adds click commands)."""
