"""Point-cloud data speed: generating procedural shapes, farthest-point sampling, and the per-sample cost of the
torch Dataset, each against a baseline measured in the same run.

- shapes: the `shapes` generator (no cache) writing S shapes of P points to Parquet, vs the floor of the same
  job — drawing the same number of Gaussian floats and writing them with the same writer. Target (issue 10):
  several thousand shapes of 2048-4096 points in well under a minute on one core.
- fps: 2048 of 4096 points for B clouds, one batched call vs B single calls.
- dataset: PointCloudDataset items (4096 points, voxel 0.02, features ones), with and without augmentation, vs
  only reading the sample out of the split.
One process, one thread (OMP/MKL/torch threads set to 1). Run, on a quiet machine:
    flock -x /tmp/plinth-cpu.lock .venv/bin/python benchmarks/pointcloud_data.py [--shapes 3900] [--points 2048 4096]
"""

from __future__ import annotations

import argparse
import os

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def clock(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def bench_shapes(tmp: Path, shapes: int, points: int) -> Path:
    from plinth.testing import make_context
    from plinth_sparsepipe.data import PointCloud, ShapesGenerator, write_split

    per_class = max(1, shapes // 13)
    gen = ShapesGenerator({"train_per_class": per_class, "test_per_class": 1, "num_points": points, "cache": False})
    ctx = make_context(tmp / f"gen{points}", stage="shapes")
    wall, cpu, out = clock(lambda: gen.generate(ctx))
    n = 13 * (per_class + 1)
    rng = np.random.default_rng(0)

    def floor():
        clouds = (PointCloud(rng.normal(size=(points, 3)).astype(np.float32), label=i % 13, source=f"s{i}")
                  for i in range(n))
        write_split(tmp / f"floor{points}.parquet", clouds, "classification", [str(k) for k in range(13)])

    fwall, fcpu, _ = clock(floor)
    print(f"shapes  {n} x {points} pts: {wall:6.2f} s wall, {cpu:6.2f} s CPU = {n / cpu:7.0f} shapes/CPU-s "
          f"({cpu / n * 1e3:.2f} ms each); floor (random floats + same writer) {fcpu:5.2f} s CPU; "
          f"ratio {cpu / fcpu:5.1f}x the floor")
    return out["train"].path


def bench_fps(batch: int) -> None:
    from plinth_sparsepipe.data import farthest_point_sample

    clouds = np.random.default_rng(0).random((batch, 4096, 3)).astype(np.float32)
    w1, c1, a = clock(lambda: farthest_point_sample(clouds, 2048))
    w2, c2, b = clock(lambda: np.stack([farthest_point_sample(x, 2048) for x in clouds]))
    assert np.array_equal(a, b)
    print(f"fps     2048 of 4096, {batch} clouds: batched {c1:5.2f} s CPU ({c1 / batch * 1e3:.1f} ms/cloud), "
          f"one by one {c2:5.2f} s; ratio {c2 / c1:4.1f}x")


def bench_dataset(path: Path, items: int) -> None:
    from plinth_sparsepipe.data import Augment, PointCloudDataset, load_split

    split = load_split(path)
    items = min(items, len(split))
    _, raw, _ = clock(lambda: [split[i].points.copy() for i in range(items)])
    for label, aug in (("no augmentation", None), ("augmented", Augment(dropout=0.1))):
        ds = PointCloudDataset(split, voxel_size=0.02, num_points=4096, augment=aug)
        _, cpu, out = clock(lambda: [ds[i] for i in range(items)])
        voxels = np.mean([len(o["coords"]) for o in out])
        print(f"dataset {label:16s}: {items / cpu:6.0f} items/CPU-s ({cpu / items * 1e3:.2f} ms, {voxels:.0f} voxels "
              f"avg); reading alone {raw / items * 1e3:.3f} ms; ratio {cpu / max(raw, 1e-9):6.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=3900)
    parser.add_argument("--points", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--fps-batch", type=int, default=16)
    parser.add_argument("--items", type=int, default=500)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths = [bench_shapes(tmp, args.shapes, p) for p in args.points]
        bench_fps(args.fps_batch)
        bench_dataset(paths[-1], args.items)


if __name__ == "__main__":
    main()
