"""The `sparsepipe` strategy's pieces: the profile format, the cluster file, the cost model, the planner and its
baselines, the `plinth sparsepipe` commands (profiler and runtime to come).

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
})
