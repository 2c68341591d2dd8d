"""The `sparsepipe` strategy's pieces: the profile format, the cluster file, the cost model, the planner and its
baselines, the `plinth sparsepipe` commands (plan, profile); the profiler; the runtime (comm: sparse tensors between
processes; schedules: 1F1B and GPipe; runtime: one rank's stage; stash: weight versions; faults; emulation of
device speeds) and the strategy with its step runner for the `pointcloud` trainer.

Names resolve on first use, so `plinth --help` (which builds the command parsers) imports none of numpy/pydantic.
"""

from __future__ import annotations

from plinth.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "LayerProfile": "profile", "Profile": "profile", "load_profile": "profile", "save_profile": "profile",
    "Cluster": "cluster", "Device": "cluster", "load_cluster": "cluster",
    "CostModel": "costs", "Prediction": "costs",
    "Plan": "plan", "load_plan": "plan", "save_plan": "plan",
    "make_plan": "planner", "NoFeasiblePlan": "planner",
    "data_parallel_plan": "baselines", "even_split_plan": "baselines",
    "profile_model": "profiler", "Layout": "schedules", "StageRuntime": "runtime", "PipelineFault": "faults",
    "SparsePipeStrategy": "strategy", "PipelineRunner": "step_runner",
})
