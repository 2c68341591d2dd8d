"""Entry point: registers components by lazy "module:Class" reference (imported only when a pipeline uses one)."""

from __future__ import annotations

from plinth import hookimpl


@hookimpl
def plinth_register_generators(register):  # type: ignore[no-untyped-def]
    register("shapes", "plinth_sparsepipe.data.procedural:ShapesGenerator")
    register("scenes", "plinth_sparsepipe.data.procedural:ScenesGenerator")
    register("modelnet40", "plinth_sparsepipe.data.local_generators:ModelNet40Generator")
    register("ply_points", "plinth_sparsepipe.data.local_generators:PlyPointsGenerator")


@hookimpl
def plinth_register_commands(subparsers):  # type: ignore[no-untyped-def]
    # `plinth sparsepipe plan ...`; pipe/cli.py imports only argparse, the planner loads when the command runs
    from .pipe.cli import add_commands

    add_commands(subparsers)


@hookimpl
def plinth_register_trainers(register):  # type: ignore[no-untyped-def]
    register("pointcloud", "plinth_sparsepipe.train.trainer:PointcloudTrainer")


@hookimpl
def plinth_register_evaluators(register):  # type: ignore[no-untyped-def]
    register("pointcloud", "plinth_sparsepipe.evaluate.evaluator:PointcloudEvaluator")


@hookimpl
def plinth_register_strategies(register):  # type: ignore[no-untyped-def]
    register("sparsepipe", "plinth_sparsepipe.pipe.strategy:SparsePipeStrategy")
