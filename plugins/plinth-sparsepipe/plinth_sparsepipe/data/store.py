"""The on-disk point-cloud dataset: one Parquet file per split plus a `meta.json` beside them.

    out/train.parquet  out/test.parquet  out/meta.json

One row per sample: `points` (list of float32 [x, y, z]), optionally `normals` and `colors` (same shape),
`label` (int64 class, classification) or `point_labels` (list of int32, segmentation; -1 = unlabelled), and
`source` (where the sample came from). Any Parquet reader opens it; `datasets.load_dataset("parquet",
data_files=...)` shows `label` as a ClassLabel with the class names. `meta.json` holds the schema version, task,
class names, per-split counts and the generator's config; each file also carries task and class names in its
schema metadata, so a split copied on its own still reads. `load_split` reads a split back into flat NumPy
arrays (no per-row Python objects), from which `PointCloudSet[i]` hands out zero-copy views.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from plinth.rundir import atomic_path

from .cloud import PointCloud

SCHEMA = "plinth.pointcloud/v1"
TASKS = ("classification", "segmentation")
XYZ_FIELDS = ("points", "normals", "colors")
ROWS_PER_GROUP = 256


@dataclass
class SplitStats:
    rows: int = 0
    points: int = 0
    per_class: Counter = field(default_factory=Counter)  # samples per class (classification) or points (segmentation)

    def to_json(self, classes: list[str]) -> dict[str, Any]:
        return {"rows": self.rows, "points": self.points,
                "per_class": {name: int(self.per_class.get(i, 0)) for i, name in enumerate(classes)}}


def write_split(path: Path, clouds: Iterable[PointCloud], task: str, classes: list[str],
                fields: tuple[str, ...] = ()) -> SplitStats:
    """Stream `clouds` into the Parquet file `path` (atomically: a temporary file, then rename). `fields` lists
    the optional per-point columns to keep ("normals", "colors"); every cloud must have them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["points", *[f for f in XYZ_FIELDS[1:] if f in fields]]
    label_col = ("label", pa.int64()) if task == "classification" else ("point_labels", pa.list_(pa.int32()))
    schema = pa.schema([(c, pa.list_(pa.list_(pa.float32(), 3))) for c in columns] + [label_col,
                       ("source", pa.string())])
    schema = schema.with_metadata(_file_metadata(task, classes))
    stats = SplitStats()
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            chunk: list[PointCloud] = []
            for cloud in clouds:
                chunk.append(cloud)
                _count(stats, cloud, task)
                if len(chunk) == ROWS_PER_GROUP:
                    writer.write_table(_table(chunk, columns, task, schema))
                    chunk = []
            if chunk or stats.rows == 0:
                writer.write_table(_table(chunk, columns, task, schema))
    return stats


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    from plinth.rundir import write_json_atomic

    write_json_atomic(Path(folder) / "meta.json", {"schema": SCHEMA, **meta})


def _file_metadata(task: str, classes: list[str]) -> dict[bytes, bytes]:
    meta = {b"plinth": json.dumps({"schema": SCHEMA, "task": task, "classes": classes}).encode()}
    if task == "classification":  # datasets shows `label` as a ClassLabel; other columns keep their Arrow types
        meta[b"huggingface"] = json.dumps(
            {"info": {"features": {"label": {"names": classes, "_type": "ClassLabel"}}}}).encode()
    return meta


def _count(stats: SplitStats, cloud: PointCloud, task: str) -> None:
    stats.rows += 1
    stats.points += len(cloud)
    if task == "classification":
        stats.per_class[int(cloud.label)] += 1
    else:
        labels, counts = np.unique(cloud.point_labels, return_counts=True)
        stats.per_class.update({int(k): int(c) for k, c in zip(labels, counts) if k >= 0})


def _table(chunk: list[PointCloud], columns: list[str], task: str, schema):
    import pyarrow as pa

    offsets = pa.array(np.concatenate([[0], np.cumsum([len(c) for c in chunk])]).astype(np.int32))

    def nested(arrays: list[np.ndarray], dtype, width: int | None):
        flat = np.concatenate(arrays).astype(dtype, copy=False).reshape(-1) if arrays else np.zeros(0, dtype)
        values = pa.array(flat)
        return pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(values, width) if width else values)

    data: dict[str, Any] = {}
    for col in columns:
        missing = [c.source for c in chunk if getattr(c, col) is None]
        if missing:
            raise ValueError(f"write_split: '{col}' is kept but {missing[0]} has none")
        data[col] = nested([getattr(c, col) for c in chunk], np.float32, 3)
    if task == "classification":
        data["label"] = pa.array([int(c.label) for c in chunk], pa.int64())
    else:
        data["point_labels"] = nested([c.point_labels for c in chunk], np.int32, None)
    data["source"] = pa.array([c.source for c in chunk], pa.string())
    return pa.table(data, schema=schema)


class PointCloudSet:
    """One split held as flat arrays: `points` [total, 3], `offsets` [rows + 1] and the same for the other
    per-point columns; `labels` [rows] for classification. `ds[i]` is a `PointCloud` of views."""

    def __init__(self, path: Path, task: str, classes: list[str], offsets: np.ndarray, columns: dict[str, np.ndarray],
                 labels: np.ndarray | None, sources: list[str], meta: dict[str, Any]):
        self.path, self.task, self.classes, self.offsets = path, task, classes, offsets
        self.points = columns["points"]
        self.normals, self.colors = columns.get("normals"), columns.get("colors")
        self.point_labels = columns.get("point_labels")
        self.labels, self.sources, self.meta = labels, sources, meta

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int) -> PointCloud:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: index {i} out of range for {len(self)} samples")
        i = i % len(self)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        cut = lambda arr: None if arr is None else arr[a:b]  # noqa: E731
        return PointCloud(points=self.points[a:b], normals=cut(self.normals), colors=cut(self.colors),
                          label=None if self.labels is None else int(self.labels[i]),
                          point_labels=cut(self.point_labels), source=self.sources[i])

    def class_counts(self) -> dict[str, int]:
        """Samples per class (classification) or labelled points per class (segmentation)."""
        if self.labels is not None:
            counts = np.bincount(self.labels, minlength=self.num_classes)
        else:
            pl = self.point_labels[self.point_labels >= 0]
            counts = np.bincount(pl, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.classes, counts)}


def load_split(path: str | Path) -> PointCloudSet:
    """Read one split (a `.parquet` file written by `write_split`, e.g. a `shapes.train` artifact's path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from plinth.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such point-cloud dataset file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"{path}: not a Parquet point-cloud dataset ({exc})") from None
    info = json.loads((table.schema.metadata or {}).get(b"plinth", b"{}"))
    meta_file = path.parent / "meta.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    if info.get("schema", meta.get("schema")) != SCHEMA or "points" not in table.column_names:
        raise ConfigError(f"{path}: not a {SCHEMA} dataset (needs schema metadata and a `points` column)")
    task, classes = info.get("task", meta.get("task")), info.get("classes", meta.get("classes"))
    columns: dict[str, np.ndarray] = {}
    offsets = None
    for col in (*XYZ_FIELDS, "point_labels"):
        if col not in table.column_names:
            continue
        arr = table.column(col).combine_chunks()
        values = arr.flatten()
        values = values.flatten() if col != "point_labels" else values
        values = values.to_numpy(zero_copy_only=False)
        columns[col] = values.reshape(-1, 3) if col != "point_labels" else values
        off = arr.offsets.to_numpy().astype(np.int64)
        off = off - off[0]
        if offsets is None:
            offsets = off
        elif not np.array_equal(off, offsets):
            raise ConfigError(f"{path}: column '{col}' has per-row lengths different from `points`")
    labels = table.column("label").to_numpy().astype(np.int64) if "label" in table.column_names else None
    sources = table.column("source").to_pylist() if "source" in table.column_names else [""] * table.num_rows
    return PointCloudSet(path, task, list(classes), offsets, columns, labels, sources, meta)
