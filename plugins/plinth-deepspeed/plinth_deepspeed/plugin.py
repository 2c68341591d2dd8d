"""Entry point: registers the `deepspeed` strategy by lazy reference (imported only when a pipeline uses it), and
keeps deepspeed out of runs that do not use it.

accelerate imports deepspeed whenever it is installed — every `save_pretrained` and every Trainer unwraps the model
through `accelerate.utils.extract_model_from_parallel`, which does `from deepspeed import DeepSpeedEngine` — and
importing deepspeed on a machine without a GPU logs "Setting accelerator to CPU ..." and costs ~1.5 s. A run
whose stages use another strategy never needs it, so for that run the module is marked absent
(`sys.modules["deepspeed"] = None`: the import system's own way to say "not installed"; accelerate and
transformers then take their no-DeepSpeed paths) and restored when the run ends.
"""

from __future__ import annotations

import importlib
import sys

from plinth import hookimpl

# modules that decide "is deepspeed installed?" once, when first imported; re-read after a hidden run
_DECIDE_ON_IMPORT = ("transformers.integrations.deepspeed",)
_hidden: dict[str, bool] = {}


@hookimpl
def plinth_register_strategies(register):
    register("deepspeed", "plinth_deepspeed.strategy:DeepSpeedStrategy")


def uses_deepspeed(run) -> bool:
    from .strategy import DeepSpeedStrategy

    return any(isinstance(st.strategy, DeepSpeedStrategy) for st in run.plan.stages)


@hookimpl
def plinth_run_started(run):
    if "deepspeed" in sys.modules or uses_deepspeed(run):
        return
    sys.modules["deepspeed"] = None  # type: ignore[assignment]
    _hidden.clear()
    _hidden.update({name: name in sys.modules for name in _DECIDE_ON_IMPORT})
    _hidden["active"] = True


@hookimpl
def plinth_run_finished(run, status):
    if not _hidden.pop("active", False):
        return
    if "deepspeed" in sys.modules and sys.modules["deepspeed"] is None:
        del sys.modules["deepspeed"]
    for name, was_imported in _hidden.items():
        if not was_imported and name in sys.modules:  # imported while hidden: let it see deepspeed again
            importlib.reload(sys.modules[name])
    _hidden.clear()
