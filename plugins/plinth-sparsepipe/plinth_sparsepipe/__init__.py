"""plinth-sparsepipe: training sparse 3D convolutional networks on point clouds, on one process or as a pipeline.

Rooms: `sparse/` (SparseTensor, kernel maps, functional ops, nn modules, back ends), `models/`, `data/`,
`train/` (the `pointcloud` trainer), `evaluate.py`, `pipe/` (profiler, planner, runtime, schedules, comm).
Importing this package is light: torch is imported when a component runs.
"""

__version__ = "0.1.0"
