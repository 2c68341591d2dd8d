"""Labelled PLY point sets (e.g. CGAL's `b9_training.ply`): x, y, z, optional normals and colours, and an integer
label property per point, -1 meaning unlabelled.

Parsing is plyfile's (ascii, binary little- and big-endian, any property types; pure Python on NumPy, so it adds
no compiled code). Coordinates are read in float64 and shifted by their minimum before becoming float32, so
georeferenced sets (coordinates ~1e5 m) keep their centimetres. Colours in uchar are scaled to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .badfiles import BadFileError
from .cloud import PointCloud


def read_ply(path: str | Path, label_property: str | None = "label") -> PointCloud:
    """One PLY file's `vertex` element as a PointCloud (`point_labels` from `label_property`; None: unlabelled)."""
    from plyfile import PlyData, PlyParseError

    path = Path(path)
    try:
        ply = PlyData.read(str(path))
    except (PlyParseError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise BadFileError(f"not a readable PLY file ({exc})") from None
    if "vertex" not in ply:
        raise BadFileError("no `vertex` element")
    v = ply["vertex"].data
    names = set(v.dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise BadFileError(f"vertex has no x, y, z properties (has {', '.join(sorted(names))})")
    if len(v) == 0:
        raise BadFileError("no points")
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    if not np.isfinite(xyz).all():
        raise BadFileError("NaN or infinite coordinates")
    cloud = PointCloud(points=(xyz - xyz.min(0)).astype(np.float32), source=str(path))
    if {"nx", "ny", "nz"} <= names:
        cloud.normals = np.stack([v["nx"], v["ny"], v["nz"]], axis=1).astype(np.float32)
    for rgb in (("red", "green", "blue"), ("r", "g", "b")):
        if set(rgb) <= names:
            c = np.stack([v[k] for k in rgb], axis=1)
            cloud.colors = (c / 255.0 if c.dtype == np.uint8 else c).astype(np.float32)
            break
    if label_property is not None:
        if label_property not in names:
            raise BadFileError(f"no `{label_property}` property (has {', '.join(sorted(names))})")
        labels = np.asarray(v[label_property])
        if labels.dtype.kind not in "iu":
            raise BadFileError(f"`{label_property}` is {labels.dtype}, not an integer type")
        cloud.point_labels = np.where(labels < 0, -1, labels).astype(np.int32)
    return cloud


def split_blocks(cloud: PointCloud, block_size: float, min_points: int = 1) -> list[PointCloud]:
    """Cut a large scene into square columns of `block_size` in x and y (the usual way to train on S3DIS-like
    scans); blocks with fewer than `min_points` points are dropped. Each block is shifted to start at 0."""
    cell = np.floor(cloud.points[:, :2] / block_size).astype(np.int64)
    key = cell[:, 0] * (int(cell[:, 1].max()) + 1) + cell[:, 1]
    order = np.argsort(key, kind="stable")
    uniq, starts = np.unique(key[order], return_index=True)
    blocks = []
    for b, (s, e) in enumerate(zip(starts, [*starts[1:], len(order)])):
        if e - s < min_points:
            continue
        part = cloud.take(order[s:e])
        part.points = part.points - part.points.min(0)
        part.source = f"{cloud.source}#block{b}"
        blocks.append(part)
    return blocks


def write_ply(path: str | Path, cloud: PointCloud, binary: bool = True, label_property: str = "label") -> None:
    """Write a PointCloud as PLY (ascii or binary_little_endian), for tests and for exporting predictions."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    cols = [cloud.points[:, 0], cloud.points[:, 1], cloud.points[:, 2]]
    if cloud.normals is not None:
        fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
        cols += list(cloud.normals.T)
    if cloud.colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        cols += list(np.round(cloud.colors * 255).astype(np.uint8).T)
    if cloud.point_labels is not None:
        fields.append((label_property, "i4"))
        cols.append(cloud.point_labels)
    data = np.empty(len(cloud), dtype=fields)
    for (name, _), col in zip(fields, cols):
        data[name] = col
    PlyData([PlyElement.describe(data, "vertex")], text=not binary, byte_order="<").write(str(path))
