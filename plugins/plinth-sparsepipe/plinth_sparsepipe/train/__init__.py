"""The `pointcloud` trainer and the step-runner seam a parallel strategy plugs into (see runner.py).

    from plinth_sparsepipe.train import LocalRunner, StepSpec, StepStats, StepRunner
"""

from plinth.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "PointcloudTrainer": "trainer", "PointcloudTrainerConfig": "config",
        "LocalRunner": "runner", "StepSpec": "runner", "StepStats": "runner", "StepRunner": "runner",
        "rng_state": "runner", "set_rng_state": "runner",
    },
)
