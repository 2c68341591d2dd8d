"""Procedural shapes and scenes: surfaces uniform by area (checked against analytic areas), hidden faces of
unions removed, the cut removes what it should, determinism, and classes that are separable but not trivially."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plinth_sparsepipe.data import SHAPE_CLASSES, ShapeStyle, make_scene, make_shape, normalize_unit_cube
from plinth_sparsepipe.data.primitives import Cone, Cylinder, Placed, Sphere, Torus, box
from plinth_sparsepipe.data.shapes import stretched_surface

N = 20000


def _close(share: float, want: float, n: int = N) -> bool:
    return abs(share - want) < 4.5 * math.sqrt(want * (1 - want) / n) + 1e-9


def test_every_class_gives_n_finite_points_with_unit_normals_deterministically():
    for k, name in enumerate(SHAPE_CLASSES):
        p, nrm = make_shape(name, 512, np.random.default_rng([0, k]))
        assert p.shape == (512, 3) and p.dtype == np.float32 and np.isfinite(p).all(), name
        np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-4)
        q, _ = make_shape(name, 512, np.random.default_rng([0, k]))
        np.testing.assert_array_equal(p, q)
        r, _ = make_shape(name, 512, np.random.default_rng([1, k]))
        assert not np.array_equal(p, r)
    assert len(SHAPE_CLASSES) >= 10


def test_stretched_box_faces_get_points_in_proportion_to_their_areas():
    stretch = np.array([2.0, 1.0, 0.5])  # a unit cube becomes 2 x 1 x 0.5: face areas 0.5, 1, 2 (each twice)
    p, nrm, _ = stretched_surface([box(0.5, 0.5, 0.5)], N, np.random.default_rng(0), stretch)
    half = stretch / 2
    on = np.isclose(np.abs(p), half, atol=1e-9, rtol=0)
    assert on.any(1).all()  # every point on a face
    for axis, area in enumerate([0.5, 1.0, 2.0]):
        assert _close(on[:, axis].mean(), 2 * area / 7.0), axis
        np.testing.assert_allclose(np.abs(nrm[on[:, axis], axis]), 1.0, atol=1e-9, rtol=0)


def test_l_shape_union_hides_internal_faces_and_stays_uniform():
    a, b, t, w = 0.5, 0.4, 0.1, 0.15
    parts = [box(t, w, b, center=(-a + t, 0, 0)), box(a, w, t, center=(0, 0, -b + t))]
    p, _, _ = stretched_surface(parts, N, np.random.default_rng(1), np.ones(3))
    # an L-shaped cross-section (x, z) extruded along y: caps + perimeter band (perimeter = bounding rectangle's)
    cross = 2 * t * 2 * b + (2 * a - 2 * t) * 2 * t
    total = 2 * cross + (4 * a + 4 * b) * 2 * w
    caps = np.isclose(np.abs(p[:, 1]), w, atol=1e-9, rtol=0)
    assert _close(caps.mean(), 2 * cross / total)
    inner_x = np.isclose(p[:, 0], -a + 2 * t, atol=1e-9, rtol=0)  # the upright bar's inner face: only above the foot
    assert (p[inner_x, 2] >= -b + 2 * t - 1e-9).all()
    foot_top = np.isclose(p[:, 2], -b + 2 * t, atol=1e-9, rtol=0)  # the foot's top face exists only right of the bar
    assert (p[foot_top, 0] >= -a + 2 * t - 1e-9).all()
    assert not np.isclose(p[:, 0], -a + t, atol=1e-9, rtol=0).any()  # nothing on planes inside the solid


def test_capsule_cone_and_torus_area_fractions():
    r, h = 0.2, 0.35
    caps = [Cylinder(r, h, caps=False), Placed(Sphere(r), shift=(0, 0, h)), Placed(Sphere(r), shift=(0, 0, -h))]
    p, _, which = stretched_surface(caps, N, np.random.default_rng(2), np.ones(3))
    side = 4 * math.pi * r * h
    assert _close((which == 0).mean(), side / (side + 4 * math.pi * r * r))
    assert (np.abs(p[which == 1, 2]) >= h - 1e-9).all()  # only the outer hemispheres remain
    cone = Cone(0.4, 0.9)
    p, _, _ = stretched_surface([cone], N, np.random.default_rng(3), np.ones(3))
    assert _close(np.isclose(p[:, 2], 0, atol=1e-12, rtol=0).mean(), cone.base / cone.area)
    R, rt = 0.35, 0.12
    p, _, _ = stretched_surface([Torus(R, rt)], N, np.random.default_rng(4), np.ones(3))
    outer = np.sqrt((p[:, :2] ** 2).sum(1)) > R  # area element R + r cos(phi): outer half holds (pi R + 2r)/(2 pi R)
    assert _close(outer.mean(), (math.pi * R + 2 * rt) / (2 * math.pi * R))


def test_half_space_cut_removes_the_asked_share_of_a_sphere():
    # Archimedes: height on a sphere is uniform, so removing a share q leaves a zone whose mean sits r*q off centre
    p, _, _ = stretched_surface([Sphere(0.5)], N, np.random.default_rng(5), np.ones(3), cut_fraction=0.3)
    assert abs(np.linalg.norm(p.mean(0)) - 0.5 * 0.3) < 0.01


def test_classes_are_separable_but_not_trivially():
    """A crude global descriptor (distance histogram + sorted extents, nearest centroid) must beat chance by far
    and still confuse some classes (a network has something to learn)."""
    names = list(SHAPE_CLASSES)

    def descriptor(p, seed):
        p = normalize_unit_cube(p)
        i = np.random.default_rng(seed).integers(0, len(p), (3000, 2))
        d = np.linalg.norm(p[i[:, 0]] - p[i[:, 1]], axis=1)
        return np.concatenate([np.histogram(d, bins=24, range=(0, 1.5))[0] / 3000, np.sort(np.ptp(p, 0))])

    def split(s, per):
        xs, ys = [], []
        for i in range(per * len(names)):
            xs.append(descriptor(make_shape(names[i % len(names)], 768, np.random.default_rng([7, s, i]))[0], i))
            ys.append(i % len(names))
        return np.array(xs), np.array(ys)

    xtr, ytr = split(0, 16)
    xte, yte = split(1, 8)
    cent = np.stack([xtr[ytr == k].mean(0) for k in range(len(names))])
    sd = xtr.std(0) + 1e-6
    acc = (np.argmin((((xte[:, None] - cent[None]) / sd) ** 2).sum(-1), 1) == yte).mean()
    assert 0.3 < acc < 0.9, acc  # chance is 1/13 = 0.08


def test_style_knobs_take_effect():
    plain = ShapeStyle(rotation="none", scale=(1, 1), anisotropy=0, occlusion=0, noise=0)
    p, _ = make_shape("sphere", 2000, np.random.default_rng(0), plain)
    r = np.linalg.norm(p - p.mean(0), axis=1)
    np.testing.assert_allclose(r, 0.5, atol=0.01)  # shift only
    noisy, _ = make_shape("sphere", 2000, np.random.default_rng(0), ShapeStyle(rotation="none", scale=(1, 1),
                                                                               anisotropy=0, occlusion=0, noise=0.02))
    assert np.linalg.norm(noisy - noisy.mean(0), axis=1).std() > 0.01
    with pytest.raises(KeyError):
        make_shape("dodecahedron", 10, np.random.default_rng(0))


def test_scene_labels_floor_and_objects():
    classes = ["sphere", "box", "torus"]
    p, nrm, lab = make_scene(4096, classes, np.random.default_rng(3))
    assert p.shape == (4096, 3) and lab.shape == (4096,) and lab.dtype == np.int32
    assert set(np.unique(lab)) <= set(range(len(classes) + 1)) and (lab == 0).any() and (lab > 0).any()
    assert np.abs(p[lab == 0, 2]).max() < 0.03  # the floor is the plane z = 0 (plus noise)
    assert p[lab > 0, 2].min() > -0.03 and p[lab > 0, 2].max() > 0.1  # objects stand on it
    p2, _, lab2 = make_scene(4096, classes, np.random.default_rng(3))
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(lab, lab2)
