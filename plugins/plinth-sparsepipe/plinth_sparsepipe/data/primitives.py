"""Surface primitives for procedural shapes: each samples points uniformly by area (with outward normals) and
tells whether points lie inside its solid, which is how a union of parts hides its internal faces.

All in float64, in a canonical frame; `Placed` moves a part rigidly. `inside(p, margin)` tests the solid shrunk by
`margin` (a negative margin grows it, so points on the boundary count as inside).
"""

from __future__ import annotations

import math

import numpy as np

from .sampling import pick_by_weight


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.sqrt((v * v).sum(-1, keepdims=True))


def _disc(n: int, r: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rho, th = r * np.sqrt(rng.random(n)), rng.random(n) * 2 * math.pi
    return rho * np.cos(th), rho * np.sin(th)


class Sphere:
    def __init__(self, r: float):
        self.r, self.area = r, 4 * math.pi * r * r

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        u = _unit(rng.normal(size=(n, 3)))
        return self.r * u, u

    def inside(self, p: np.ndarray, margin: float) -> np.ndarray:
        return (p * p).sum(1) < (self.r - margin) ** 2


class Cylinder:
    """Axis z, z in [-h, h]; `caps=False` leaves the ends open (the solid for `inside` is still closed)."""

    def __init__(self, r: float, h: float, caps: bool = True):
        self.r, self.h, self.caps = r, h, caps
        self.side, self.cap = 4 * math.pi * r * h, (math.pi * r * r if caps else 0.0)
        self.area = self.side + 2 * self.cap

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k_side, k_top, k_bot = rng.multinomial(n, np.array([self.side, self.cap, self.cap]) / self.area)
        th = rng.random(k_side) * 2 * math.pi
        c, s = np.cos(th), np.sin(th)
        side = np.stack([self.r * c, self.r * s, rng.uniform(-self.h, self.h, k_side)], 1)
        pts, nrm = [side], [np.stack([c, s, np.zeros(k_side)], 1)]
        for k, z in ((k_top, self.h), (k_bot, -self.h)):
            x, y = _disc(k, self.r, rng)
            pts.append(np.stack([x, y, np.full(k, z)], 1))
            nrm.append(np.tile([0.0, 0.0, np.sign(z)], (k, 1)))
        return np.concatenate(pts), np.concatenate(nrm)

    def inside(self, p: np.ndarray, margin: float) -> np.ndarray:
        return ((p[:, :2] ** 2).sum(1) < (self.r - margin) ** 2) & (np.abs(p[:, 2]) < self.h - margin)


class Cone:
    """Base disc of radius r at z = 0, apex at z = h."""

    def __init__(self, r: float, h: float):
        self.r, self.h, self.slant = r, h, math.hypot(r, h)
        self.lateral, self.base = math.pi * r * self.slant, math.pi * r * r
        self.area = self.lateral + self.base

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k_lat, k_base = rng.multinomial(n, np.array([self.lateral, self.base]) / self.area)
        t, th = np.sqrt(rng.random(k_lat)), rng.random(k_lat) * 2 * math.pi  # t: distance from the apex, as a fraction
        c, s = np.cos(th), np.sin(th)
        lat = np.stack([self.r * t * c, self.r * t * s, self.h * (1 - t)], 1)
        lat_n = np.stack([self.h * c, self.h * s, np.full(k_lat, self.r)], 1) / self.slant
        x, y = _disc(k_base, self.r, rng)
        base = np.stack([x, y, np.zeros(k_base)], 1)
        return np.concatenate([lat, base]), np.concatenate([lat_n, np.tile([0.0, 0.0, -1.0], (k_base, 1))])

    def inside(self, p: np.ndarray, margin: float) -> np.ndarray:
        z = p[:, 2]
        rho = np.sqrt((p[:, :2] ** 2).sum(1))
        return (z > margin) & (z < self.h - margin) & (rho < self.r * (1 - z / self.h) - margin)


class Torus:
    """Ring about the z axis: centre-line radius R, tube radius r."""

    def __init__(self, R: float, r: float):
        self.R, self.r, self.area = R, r, 4 * math.pi**2 * R * r

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        phis: list[np.ndarray] = []
        got = 0
        while got < n:  # the area element is proportional to R + r cos(phi): rejection sampling
            phi = rng.random(2 * (n - got) + 16) * 2 * math.pi
            phi = phi[rng.random(len(phi)) * (self.R + self.r) < self.R + self.r * np.cos(phi)]
            phis.append(phi)
            got += len(phi)
        phi = np.concatenate(phis)[:n]
        th = rng.random(n) * 2 * math.pi
        nrm = np.stack([np.cos(phi) * np.cos(th), np.cos(phi) * np.sin(th), np.sin(phi)], 1)
        ring = self.R + self.r * np.cos(phi)
        return np.stack([ring * np.cos(th), ring * np.sin(th), self.r * np.sin(phi)], 1), nrm

    def inside(self, p: np.ndarray, margin: float) -> np.ndarray:
        rho = np.sqrt((p[:, :2] ** 2).sum(1))
        return (rho - self.R) ** 2 + p[:, 2] ** 2 < (self.r - margin) ** 2


class ConvexPolyhedron:
    """A convex solid from its vertices and planar polygon faces (any winding: normals are made outward)."""

    def __init__(self, vertices: np.ndarray, polygons: list[list[int]]):
        v = np.asarray(vertices, dtype=np.float64)
        tris = np.array([[poly[0], poly[i], poly[i + 1]] for poly in polygons for i in range(1, len(poly) - 1)])
        a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
        cross = np.cross(b - a, c - a)
        outward = ((a - v.mean(0)) * cross).sum(1) >= 0
        self.normals = _unit(np.where(outward[:, None], cross, -cross))
        self.tris, self.v = tris, v
        self.tri_area = np.linalg.norm(cross, axis=1) / 2
        self.area = float(self.tri_area.sum())
        self.offsets = (self.normals * a).sum(1)  # plane: n . p = offset

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        face = pick_by_weight(self.tri_area, n, rng)
        u, w = rng.random(n), rng.random(n)
        flip = u + w > 1
        u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
        a, b, c = (self.v[self.tris[face, i]] for i in range(3))
        return a + u[:, None] * (b - a) + w[:, None] * (c - a), self.normals[face]

    def inside(self, p: np.ndarray, margin: float) -> np.ndarray:
        return (p @ self.normals.T - self.offsets < -margin).all(1)


def box(hx: float, hy: float, hz: float, center=(0.0, 0.0, 0.0)) -> ConvexPolyhedron:
    corners = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (-hz, hz)]) + np.asarray(center)
    faces = [[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]]
    return ConvexPolyhedron(corners, faces)


def square_pyramid(half: float, height: float) -> ConvexPolyhedron:
    z0 = -height / 2
    v = [[-half, -half, z0], [half, -half, z0], [half, half, z0], [-half, half, z0], [0, 0, z0 + height]]
    return ConvexPolyhedron(np.array(v), [[0, 1, 2, 3], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])


def triangular_prism(half_base: float, height: float, half_length: float) -> ConvexPolyhedron:
    """Triangle (-b, -h/2), (b, -h/2), (0, h/2) in the xz plane, extruded along y."""
    tri = [(-half_base, -height / 2), (half_base, -height / 2), (0.0, height / 2)]
    v = [[x, y, z] for y in (-half_length, half_length) for x, z in tri]
    return ConvexPolyhedron(np.array(v), [[0, 1, 2], [3, 4, 5], [0, 1, 4, 3], [1, 2, 5, 4], [2, 0, 3, 5]])


class Placed:
    """A part moved rigidly: p_world = R p + t."""

    def __init__(self, part, rot: np.ndarray | None = None, shift=(0.0, 0.0, 0.0)):
        self.part, self.area = part, part.area
        self.rot = np.eye(3) if rot is None else np.asarray(rot, dtype=np.float64)
        self.shift = np.asarray(shift, dtype=np.float64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p, nrm = self.part.sample(n, rng)
        return p @ self.rot.T + self.shift, nrm @ self.rot.T

    def inside(self, p: np.ndarray, margin: float) -> np.ndarray:
        return self.part.inside((p - self.shift) @ self.rot, margin)


EDGE = 1e-7  # boundary tolerance of the union's tie rule


def sample_union(parts: list, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """About `n` points uniform over the surface of the union of `parts` (each part gets points in proportion to
    its area, then those hidden inside another part are dropped), their normals, and the index of the part each
    came from. Where two parts share a face, the earlier part keeps it, so shared faces are not sampled twice."""
    areas = np.array([p.area for p in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    pts, nrm, which = [], [], []
    for i, (part, k) in enumerate(zip(parts, counts)):
        if k == 0:
            continue
        p, nr = part.sample(int(k), rng)
        hidden = np.zeros(len(p), bool)
        for j, other in enumerate(parts):
            if j != i:
                hidden |= other.inside(p, -EDGE if j < i else EDGE)
        pts.append(p[~hidden])
        nrm.append(nr[~hidden])
        which.append(np.full(int((~hidden).sum()), i))
    return np.concatenate(pts), np.concatenate(nrm), np.concatenate(which)
