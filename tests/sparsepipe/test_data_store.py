"""The on-disk format: round trips, what other readers see, and clear errors for files that are not it."""

from __future__ import annotations

import numpy as np
import pytest

from plinth.errors import ConfigError
from plinth_sparsepipe.data import PointCloud, load_split, write_meta, write_split


def _clouds(n, seg=False):
    rng = np.random.default_rng(0)
    for i in range(n):
        k = 5 + 7 * i  # ragged sizes
        pts = rng.random((k, 3)).astype(np.float32)
        yield PointCloud(pts, normals=-pts, label=None if seg else i % 3,
                         point_labels=(rng.integers(-1, 2, k).astype(np.int32) if seg else None), source=f"s{i}")


def test_classification_round_trip_and_datasets_sees_class_names(tmp_path):
    from plinth_sparsepipe.data import store

    store.ROWS_PER_GROUP, old = 4, store.ROWS_PER_GROUP  # several row groups
    try:
        stats = write_split(tmp_path / "train.parquet", _clouds(10), "classification", ["a", "b", "c"], ("normals",))
    finally:
        store.ROWS_PER_GROUP = old
    write_meta(tmp_path, {"task": "classification", "classes": ["a", "b", "c"]})
    assert stats.rows == 10 and dict(stats.per_class) == {0: 4, 1: 3, 2: 3}
    ds = load_split(tmp_path / "train.parquet")
    assert len(ds) == 10 and ds.task == "classification" and ds.classes == ["a", "b", "c"]
    assert ds.meta["schema"] == "plinth.pointcloud/v1"
    for want, got in zip(_clouds(10), (ds[i] for i in range(10))):
        np.testing.assert_array_equal(want.points, got.points)
        np.testing.assert_array_equal(want.normals, got.normals)
        assert (want.label, want.source) == (got.label, got.source)
    assert ds[-1].source == "s9" and ds.class_counts() == {"a": 4, "b": 3, "c": 3}
    with pytest.raises(IndexError):
        ds[10]

    import datasets

    hf = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "train.parquet")}, split="train")
    assert hf.features["label"].names == ["a", "b", "c"]
    assert np.asarray(hf[3]["points"]).shape == (26, 3)


def test_segmentation_round_trip_without_meta_file(tmp_path):
    write_split(tmp_path / "s.parquet", _clouds(3, seg=True), "segmentation", ["floor", "box"])
    ds = load_split(tmp_path / "s.parquet")  # task and classes come from the file's own metadata
    assert ds.task == "segmentation" and ds.labels is None and ds.normals is None
    for want, got in zip(_clouds(3, seg=True), (ds[i] for i in range(3))):
        np.testing.assert_array_equal(want.point_labels, got.point_labels)
    total = np.concatenate([c.point_labels for c in _clouds(3, seg=True)])
    assert ds.class_counts() == {"floor": int((total == 0).sum()), "box": int((total == 1).sum())}


def test_load_split_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.parquet: no such"):
        load_split(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ConfigError, match="bad.parquet: not a Parquet"):
        load_split(bad)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="other.parquet: not a plinth.pointcloud/v1"):
        load_split(tmp_path / "other.parquet")


def test_write_split_refuses_a_cloud_without_a_kept_field(tmp_path):
    clouds = [PointCloud(np.zeros((2, 3), np.float32), label=0, source="no-normals")]
    with pytest.raises(ValueError, match="no-normals has none"):
        write_split(tmp_path / "x.parquet", clouds, "classification", ["a"], ("normals",))
    assert not list(tmp_path.iterdir())  # no half-written file left behind
