"""Transforms against independent references: brute-force FPS and voxelisation, hand-computed normalisation,
analytic area fractions for mesh sampling."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from plinth.errors import ConfigError
from plinth_sparsepipe.data import (Augment, PointCloud, farthest_point_sample, normalize_per_axis,
                                    normalize_unit_cube, point_features, random_sample, sample_triangles,
                                    voxel_majority, voxelize)


def test_normalize_unit_cube_keeps_aspect_and_per_axis_fills_each_axis():
    pts = np.array([[0, 0, 0], [4, 2, 1], [2, 1, 0.5]], dtype=np.float32)
    cube = normalize_unit_cube(pts)
    np.testing.assert_allclose(cube.min(0), [0, 0.25, 0.375], atol=1e-6)  # extents 1, .5, .25, centred on .5
    np.testing.assert_allclose(cube.max(0), [1, 0.75, 0.625], atol=1e-6)
    axis = normalize_per_axis(pts)
    np.testing.assert_allclose(axis, [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5]], atol=1e-6)
    flat = normalize_per_axis(np.array([[0, 1, 5], [2, 3, 5]], dtype=np.float32))
    np.testing.assert_allclose(flat[:, 2], [0.5, 0.5])  # a flat axis: centred, never divided by zero


def _brute_voxels(points, size, feats):
    cells = defaultdict(list)
    for i, p in enumerate(points):
        cells[tuple(int(math.floor(float(v) / size)) for v in p)].append(i)
    return cells


@pytest.mark.parametrize("reduce", ["mean", "first"])
def test_voxelize_matches_brute_force(reduce):
    rng = np.random.default_rng(0)
    pts = rng.random((500, 3)).astype(np.float32)
    feats = rng.normal(size=(500, 2)).astype(np.float32)
    vox = voxelize(pts, 0.25, feats, reduce=reduce)
    ref = _brute_voxels(pts, 0.25, feats)
    assert vox.coords.dtype == np.int32 and len(vox.coords) == len(ref)
    assert {tuple(c) for c in vox.coords.tolist()} == set(ref)
    for row, c in enumerate(vox.coords.tolist()):
        members = ref[tuple(c)]
        want = feats[members].mean(0) if reduce == "mean" else feats[members[0]]
        np.testing.assert_allclose(vox.feats[row], want, rtol=1e-5, atol=1e-6)
        assert set(np.flatnonzero(vox.point_to_voxel == row)) == set(members)


def test_voxelize_unit_cube_at_002_is_50_cubed():
    pts = np.array([[0, 0, 0], [1, 1, 1], [0.999, 0.5, 0.0199]], dtype=np.float32)
    vox = voxelize(pts, 0.02, grid=50)
    assert vox.coords.min() == 0 and vox.coords.max() == 49  # the upper face goes to the last voxel
    assert {tuple(c) for c in vox.coords.tolist()} == {(0, 0, 0), (49, 49, 49), (49, 25, 0)}


def test_voxel_majority_matches_counter_with_ties_to_smaller_label():
    rng = np.random.default_rng(1)
    p2v = rng.integers(0, 30, 400)
    labels = rng.integers(-1, 4, 400)
    got = voxel_majority(labels, p2v, 31)
    for v in range(31):
        c = Counter(int(x) for x in labels[p2v == v] if x != -1)
        want = -1 if not c else min(k for k, n in c.items() if n == max(c.values()))
        assert got[v] == want


def _brute_fps(points, k, start=0):
    chosen = [start]
    while len(chosen) < k:
        best, best_d = None, -1.0
        for i, p in enumerate(points):
            d = min(sum((float(p[j]) - float(points[c][j])) ** 2 for j in range(3)) for c in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def test_farthest_point_sample_matches_brute_force_single_and_batched():
    rng = np.random.default_rng(2)
    clouds = rng.random((3, 60, 3)).astype(np.float32)
    batched = farthest_point_sample(clouds, 12)
    for b in range(3):
        ref = _brute_fps(clouds[b], 12)
        assert farthest_point_sample(clouds[b], 12).tolist() == ref
        assert batched[b].tolist() == ref
    assert farthest_point_sample(clouds[0], 5, start=7)[0] == 7
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_sample(clouds[0], 61)


def test_random_sample_replaces_only_when_fewer():
    rng = np.random.default_rng(3)
    idx = random_sample(100, 40, rng)
    assert len(set(idx.tolist())) == 40 and idx.max() < 100
    idx = random_sample(10, 25, rng)
    assert len(idx) == 25 and set(idx.tolist()) == set(range(10))  # every point at least once
    a, b = random_sample(50, 20, np.random.default_rng(9)), random_sample(50, 20, np.random.default_rng(9))
    assert a.tolist() == b.tolist()


def test_sample_triangles_is_area_weighted_and_on_the_surface():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1], [0, 2, 1]], dtype=np.float64)
    f = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3
    n = 20000
    pts, nrm = sample_triangles(v, f, n, np.random.default_rng(4))
    upper = pts[:, 2] > 0.5
    share = upper.mean()
    assert abs(share - 3 / 3.5) < 4 * math.sqrt(share * (1 - share) / n)
    low = pts[~upper]
    assert (low[:, 0] >= -1e-6).all() and (low[:, 1] >= -1e-6).all() and (low.sum(1) <= 1 + 1e-5).all()
    np.testing.assert_allclose(np.abs(nrm[:, 2]), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="zero surface area"):
        sample_triangles(np.zeros((3, 3)), np.array([[0, 1, 2]]), 5, np.random.default_rng(0))


def test_augment_is_deterministic_and_rotates_normals_with_points():
    rng = np.random.default_rng(5)
    pts = rng.random((200, 3)).astype(np.float32)
    nrm = rng.normal(size=(200, 3)).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    cloud = PointCloud(pts, nrm, label=1)
    aug = Augment(rotate_axis="z", scale=(1, 1), jitter_sigma=0)
    a, b = aug(cloud, np.random.default_rng(7)), aug(cloud, np.random.default_rng(7))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_allclose(a.points[:, 2], pts[:, 2], atol=1e-6)  # about z: heights stay
    r0, r1 = np.linalg.norm(pts[:, :2] - 0.5, axis=1), np.linalg.norm(a.points[:, :2] - 0.5, axis=1)
    np.testing.assert_allclose(r0, r1, atol=1e-5)
    np.testing.assert_allclose(((pts - 0.5) * nrm).sum(1), ((a.points - 0.5) * a.normals).sum(1), atol=1e-5)
    c = Augment(rotate_axis=None, scale=(1, 1), jitter_sigma=0.5, jitter_clip=0.01, dropout=0.5)(
        cloud, np.random.default_rng(8))
    assert 100 <= len(c) < 200 and len(c.normals) == len(c)  # dropped at most half
    nearest = np.sqrt(((c.points[:, None] - pts[None]) ** 2).sum(-1)).min(1)
    assert nearest.max() <= 0.01 * math.sqrt(3) + 1e-6  # a subset of the points, each moved within the clip


def test_augment_jitter_is_clipped():
    pts = np.full((500, 3), 0.5, np.float32)
    out = Augment(rotate_axis=None, scale=(1, 1), jitter_sigma=1.0, jitter_clip=0.02)(PointCloud(pts),
                                                                                    np.random.default_rng(0))
    assert np.abs(out.points - 0.5).max() <= 0.02 + 1e-6


def test_point_features_in_order_and_missing_normals_name_the_source():
    pts = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    cloud = PointCloud(pts, colors=np.full((10, 3), 0.25, np.float32), source="chair_0001.off")
    f = point_features(cloud, ["ones", "xyz", "colors"])
    assert f.shape == (10, 7) and (f[:, 0] == 1).all()
    np.testing.assert_array_equal(f[:, 1:4], pts)
    with pytest.raises(ConfigError, match="chair_0001.off has no normals"):
        point_features(cloud, ["normals"])
    with pytest.raises(ValueError, match="choose from"):
        point_features(cloud, ["rgb"])
