"""Labelled PLY point sets: files written by hand here (ascii text, binary_little_endian bytes from NumPy) are
read back with labels, -1 kept as unlabelled, colours, normals, georeferenced coordinates; bad files skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from plinth.errors import ConfigError
from plinth.testing import make_context
from plinth_sparsepipe.data import BadFileError, PlyPointsGenerator, load_split, read_ply, split_blocks

ASCII = """ply
format ascii 1.0
comment hand-written
element vertex 4
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
property int label
element face 0
property list uchar int vertex_indices
end_header
0 0 0 255 0 0 0
1 0 0 0 255 0 1
0 1 0 0 0 255 -1
0 0 1 51 51 51 2
"""


def write_binary(path, n=300, offset=(500000.0, 4000000.0, 10.0), seed=0, label="label"):
    rng = np.random.default_rng(seed)
    dtype = [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"), (label, "<i4")]
    data = np.empty(n, dtype=dtype)
    xyz = rng.random((n, 3)) * [4.0, 4.0, 1.0] + offset
    data["x"], data["y"], data["z"] = xyz.T
    data["nx"], data["ny"], data["nz"] = 0, 0, 1
    data[label] = rng.integers(-1, 3, n)
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
              + "".join(f"property {t} {name}\n" for name, t in zip(
                  ["x", "y", "z", "nx", "ny", "nz", label], ["double"] * 3 + ["float"] * 3 + ["int"]))
              + "end_header\n")
    path.write_bytes(header.encode() + data.tobytes())
    return xyz, data[label]


def test_ascii_ply_with_colours_and_unlabelled_points(tmp_path):
    f = tmp_path / "a.ply"
    f.write_text(ASCII)
    cloud = read_ply(f)
    np.testing.assert_array_equal(cloud.points, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cloud.point_labels, [0, 1, -1, 2])
    np.testing.assert_allclose(cloud.colors[[0, 3]], [[1, 0, 0], [0.2, 0.2, 0.2]])
    assert cloud.normals is None and cloud.source == str(f)


def test_binary_ply_keeps_precision_of_georeferenced_points(tmp_path):
    f = tmp_path / "b.ply"
    xyz, labels = write_binary(f)
    cloud = read_ply(f)
    np.testing.assert_allclose(cloud.points, xyz - xyz.min(0), atol=1e-5)  # float32 after the shift, not before
    np.testing.assert_array_equal(cloud.point_labels, labels)
    np.testing.assert_array_equal(cloud.normals, np.tile([0, 0, 1], (300, 1)))


def test_bad_ply_files(tmp_path):
    f = tmp_path / "x.ply"
    f.write_text("this is not ply\n")
    with pytest.raises(BadFileError, match="not a readable PLY"):
        read_ply(f)
    f.write_text(ASCII.replace("property int label\n", "").replace(" 0\n1 0 0 0 255 0 1", "\n1 0 0 0 255 0")
                 .replace(" -1\n", "\n").replace("51 51 51 2", "51 51 51"))
    with pytest.raises(BadFileError, match="no `label` property"):
        read_ply(f)
    assert read_ply(f, label_property=None).point_labels is None
    write_binary(f, n=5, label="class")
    assert read_ply(f, label_property="class").point_labels.shape == (5,)


def test_split_blocks_partitions_the_points():
    from plinth_sparsepipe.data import PointCloud

    pts = np.array([[0.1, 0.1, 0], [0.2, 0.9, 1], [1.5, 0.1, 0], [1.6, 0.2, 3], [3.5, 3.5, 0]], np.float32)
    cloud = PointCloud(pts, point_labels=np.arange(5, dtype=np.int32), source="s.ply")
    blocks = split_blocks(cloud, 1.0, min_points=2)
    assert sorted(b.point_labels.tolist() for b in blocks) == [[0, 1], [2, 3]]  # the lone point is dropped
    assert all(b.points.min() == 0 for b in blocks) and blocks[0].source.startswith("s.ply#block")


def test_ply_points_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scans").mkdir()
    write_binary(tmp_path / "scans" / "a.ply", seed=1)
    write_binary(tmp_path / "scans" / "b.ply", seed=2)
    (tmp_path / "scans" / "broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n")
    (tmp_path / "test.ply").write_text(ASCII)
    write_binary(tmp_path / "test2.ply", seed=3)
    ctx = make_context(tmp_path / "run", stage="ply")
    config = {"train": ["scans/*.ply"], "test": ["test.ply", "test2.ply"], "classes": ["ground", "tree", "roof"],
              "block_size": 2.0, "min_points": 10, "fields": ["normals"]}
    out = PlyPointsGenerator(config).generate(ctx)
    meta = json.loads((ctx.output_dir / "meta.json").read_text())
    bad = {b["path"]: b["reason"] for b in meta["bad_files"]}
    assert set(bad) == {"scans/broken.ply", "test.ply"}
    assert bad["test.ply"] == "no normals (asked for by `fields`)" and "early end-of-file" in bad["scans/broken.ply"]
    train = load_split(out["train"].path)
    assert train.classes == ["ground", "tree", "roof"] and train.normals is not None
    assert len(train) == 8 and sum(len(train[i]) for i in range(len(train))) == 600  # 2 files x 4 blocks
    assert meta["splits"]["train"]["per_class"]["roof"] > 0
    with pytest.raises(ConfigError, match="no usable file in the test split"):
        PlyPointsGenerator({**config, "test": ["test.ply"]}).generate(make_context(tmp_path / "run2"))
    with pytest.raises(ValidationError, match="'nothing/\\*.ply' matches no file"):
        PlyPointsGenerator({"train": ["nothing/*.ply"], "test": ["test.ply"]})
