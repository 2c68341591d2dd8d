"""Entry point of each process torchrun starts for a multi-process stage: `python -m plinth.worker LAUNCH.json`.

It rebuilds the stage's component and strategy from the launch file the runner wrote, calls `strategy.setup`,
runs the component, and rank 0 writes `result.json` (atomically) for the runner to record.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .artifacts import Artifact
from .context import StageContext
from .plugins import load_plugins
from .rundir import read_json, write_json_atomic


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    launch_path = Path(argv[0])
    launch = read_json(launch_path)
    st = launch["stage"]
    plugins = load_plugins()
    comp_cls = plugins.get(st["slot"], st["component"])
    component = comp_cls(comp_cls.Config.model_validate(st["config"]))
    strat = dict(st["strategy"])
    strat_cls = plugins.get("strategy", strat.pop("name"))
    strategy = strat_cls(strat_cls.Config.model_validate(strat))
    inputs = {
        k: [Artifact.from_json(a) for a in v] if isinstance(v, list) else Artifact.from_json(v)
        for k, v in launch["inputs"].items()
    }
    ctx = StageContext(
        run_dir=Path(launch["run_dir"]), stage=st["id"], output_dir=Path(launch["out_dir"]),
        work_dir=Path(launch["work_dir"]), inputs=inputs, strategy=strategy, round=st["round"],
        attempt=launch.get("attempt", 1), hook=plugins.hook,
        params=st["config"],
    )
    strategy.setup(ctx)
    outputs = component.run(ctx) or {}
    if ctx.is_main:
        write_json_atomic(launch_path.parent / "result.json", {"outputs": {k: a.to_json() for k, a in outputs.items()}})
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - teardown must not mask a finished result
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
