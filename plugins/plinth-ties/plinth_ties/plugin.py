"""Entry point: registers the mergers by lazy "module:Class" reference (imported when a pipeline uses one)."""

from __future__ import annotations

from plinth import hookimpl

MERGER_CLASSES = {
    "ties": "TiesMerger",
    "dare_ties": "DareTiesMerger",
    "dare_linear": "DareLinearMerger",
    "task_arithmetic": "TaskArithmeticMerger",
    "linear": "LinearMerger",
}


@hookimpl
def plinth_register_mergers(register):  # type: ignore[no-untyped-def]
    for name, cls in MERGER_CLASSES.items():
        register(name, f"plinth_ties.mergers:{cls}")
