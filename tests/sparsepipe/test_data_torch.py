"""What the trainer iterates: voxelised items, their determinism per (seed, epoch, index), batching through the
engine's sparse_collate with per-point maps that still point at the right voxels, and the dense 32^3 baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plinth.errors import ConfigError
from plinth_sparsepipe.data import (Augment, DenseGridDataset, PointCloud, PointCloudDataset, collate,
                                    dense_collate, farthest_point_sample, load_split, make_scene, make_shape,
                                    occupancy_grid, write_split)


@pytest.fixture(scope="module")
def shapes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes") / "train.parquet"
    clouds = [PointCloud(*make_shape(name, 1500, np.random.default_rng(i)), label=k, source=f"s{i}")
              for i, (k, name) in enumerate([(0, "sphere"), (1, "box"), (2, "torus"), (0, "sphere")])]
    write_split(path, clouds, "classification", ["sphere", "box", "torus"], ("normals",))
    return path


@pytest.fixture(scope="module")
def scenes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenes") / "train.parquet"
    clouds = []
    for i in range(3):
        p, n, lab = make_scene(2000, ["sphere", "box"], np.random.default_rng(i))
        lab[:50] = -1  # some unlabelled points
        clouds.append(PointCloud(p, n, point_labels=lab, source=f"scene{i}"))
    write_split(path, clouds, "segmentation", ["floor", "sphere", "box"])
    return path


def test_classification_items(shapes_file):
    ds = PointCloudDataset(shapes_file, voxel_size=0.02, num_points=1024, features=("ones", "normals"))
    assert (len(ds), ds.num_classes, ds.in_channels, ds.task) == (4, 3, 4, "classification")
    item = ds[1]
    coords, feats = item["coords"], item["feats"]
    assert coords.dtype == torch.int32 and feats.dtype == torch.float32 and item["label"].item() == 1
    assert coords.shape[1] == 3 and feats.shape == (len(coords), 4) and (feats[:, 0] == 1).all()
    assert len(torch.unique(coords, dim=0)) == len(coords) <= 1024
    assert coords.min() >= 0 and coords.max() <= 49  # unit cube at 0.02: 50^3
    assert coords.max(0).values.max() >= 45  # the longest side fills the grid
    again = PointCloudDataset(shapes_file, voxel_size=0.02, num_points=1024, features=("ones", "normals"))[1]
    assert torch.equal(again["coords"], coords)


def test_augmented_items_depend_on_seed_epoch_index_only(shapes_file):
    ds = PointCloudDataset(shapes_file, voxel_size=0.05, augment=Augment(dropout=0.2), features=("xyz",))
    a, b = ds[0], ds[0]
    assert torch.equal(a["coords"], b["coords"]) and torch.equal(a["feats"], b["feats"])
    ds.set_epoch(1)
    c = ds[0]
    assert not torch.equal(a["feats"][:5], c["feats"][:5]) or len(a["feats"]) != len(c["feats"])
    other = PointCloudDataset(shapes_file, voxel_size=0.05, augment=Augment(dropout=0.2), features=("xyz",), seed=1)
    assert not torch.equal(other[0]["feats"][:5], a["feats"][:5]) or len(other[0]["feats"]) != len(a["feats"])


def test_missing_features_are_a_config_error(scenes_file):
    with pytest.raises(ConfigError, match="scene0 has no colors"):
        PointCloudDataset(scenes_file, features=("colors",))[0]


def test_collate_classification_batches_into_one_sparse_tensor(shapes_file):
    ds = PointCloudDataset(shapes_file, voxel_size=0.05, num_points=512)
    items = [ds[i] for i in range(3)]
    batch = collate(items)
    x = batch["input"]
    assert x.coords.shape == (sum(len(it["coords"]) for it in items), 4) and x.coords.dtype == torch.int32
    assert torch.equal(batch["labels"], torch.tensor([0, 1, 2])) and batch["index"].tolist() == [0, 1, 2]
    assert x.batch_size == 3 and torch.equal(x.coords[: len(items[0]["coords"]), 1:], items[0]["coords"])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=0)
    assert [b["labels"].tolist() for b in loader] == [[0, 1], [2, 0]]


def test_segmentation_items_and_collate_keep_point_to_voxel_right(scenes_file):
    ds = PointCloudDataset(scenes_file, voxel_size=0.04, num_points=None, features=("ones",))
    items = [ds[i] for i in range(3)]
    for it in items:
        p2v, labels, vlab = it["point_to_voxel"], it["point_labels"], it["voxel_labels"]
        assert len(p2v) == len(labels) == 2000 and len(vlab) == len(it["coords"])
        for v in np.unique(p2v.numpy())[:40]:  # the voxel label is the majority of its labelled points
            pts = labels[p2v == v]
            pts = pts[pts >= 0]
            if len(pts):
                assert (pts == vlab[v]).sum() == torch.bincount(pts).max()
            else:
                assert vlab[v] == -1
    batch = collate(items)
    x = batch["input"]
    assert len(batch["point_to_voxel"]) == len(batch["point_labels"]) == len(batch["point_batch"]) == 6000
    # every point's global voxel row lies in its own cloud and holds that point's voxel coordinates
    rows = batch["point_to_voxel"]
    assert torch.equal(x.coords[rows, 0].long(), batch["point_batch"])
    local = torch.cat([it["coords"][it["point_to_voxel"]] for it in items])
    assert torch.equal(x.coords[rows, 1:], local)
    assert len(batch["voxel_labels"]) == len(x.coords)


def test_occupancy_grid_matches_a_loop():
    pts = np.random.default_rng(0).random((300, 3)).astype(np.float32) * [2, 1, 1]
    grid = occupancy_grid(pts, 8)
    ref = np.zeros((8, 8, 8))
    lo, ext = pts.min(0), (pts.max(0) - pts.min(0)).max()
    for p in pts:
        q = (p - (lo + pts.max(0)) / 2) / ext + 0.5
        i, j, k = (min(int(np.floor(v * 8)), 7) for v in q)
        ref[i, j, k] = 1
    np.testing.assert_array_equal(grid, ref)


def test_dense_grid_dataset_uses_farthest_points(shapes_file):
    ds = DenseGridDataset(shapes_file, resolution=16, num_points=64)
    item = ds[2]
    assert item["grid"].shape == (1, 16, 16, 16) and item["label"].item() == 2
    cloud = load_split(shapes_file)[2]
    want = occupancy_grid(cloud.points[farthest_point_sample(cloud.points, 64)], 16)
    np.testing.assert_array_equal(item["grid"][0].numpy(), want)
    assert 0 < item["grid"].sum() <= 64
    batch = dense_collate([ds[0], ds[1]])
    assert batch["input"].shape == (2, 1, 16, 16, 16) and batch["labels"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="classification"):
        DenseGridDataset(_seg_set(shapes_file.parent))


def _seg_set(folder):
    path = folder / "seg.parquet"
    write_split(path, [PointCloud(np.zeros((3, 3), np.float32), point_labels=np.zeros(3, np.int32))],
                "segmentation", ["a"])
    return load_split(path)


def test_dense_precompute_matches_lazy_items(shapes_file):
    lazy = DenseGridDataset(shapes_file, resolution=16, num_points=64)
    eager = DenseGridDataset(shapes_file, resolution=16, num_points=64, precompute=True)
    assert len(eager._fps) == 4
    for i in range(4):
        assert torch.equal(lazy[i]["grid"], eager[i]["grid"])


def test_unnormalised_clouds_are_not_clipped_to_the_unit_grid(tmp_path):
    pts = np.array([[0, 0, 0], [3.0, 0, 0], [-2.0, 1, 0]], np.float32)
    write_split(tmp_path / "m.parquet", [PointCloud(pts, point_labels=np.array([0, 1, 1], np.int32))],
                "segmentation", ["a", "b"])
    item = PointCloudDataset(tmp_path / "m.parquet", voxel_size=0.5, num_points=None, normalize="none")[0]
    assert sorted(item["coords"][:, 0].tolist()) == [-4, 0, 6]  # metres / 0.5, nothing folded into [0, 2)


def test_importing_the_data_package_is_light():
    import subprocess
    import sys

    code = ("import sys, plinth_sparsepipe.data as d; d.load_split; d.ShapesGenerator; "
            "print(sorted(m for m in ('torch', 'pyarrow', 'plyfile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
