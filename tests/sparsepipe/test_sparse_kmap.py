"""Kernel maps against a brute-force reference (a Python dict of coordinates), and the cache."""

from __future__ import annotations

import itertools

import pytest
import torch

from plinth_sparsepipe.sparse import SparseTensor, sparse_collate
from plinth_sparsepipe.sparse import kmap as km
from plinth_sparsepipe.sparse import nn as spnn


def _coords(n: int, seed: int, extent: int = 9, batch: int = 2, step: int = 1, low: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randint(low, low + extent, (n, 3), generator=g) * step
    b = torch.randint(0, batch, (n, 1), generator=g)
    return torch.unique(torch.cat([b, xyz], 1), dim=0).to(torch.int32)


def _offsets(k: int, step: int):
    r = range(-(k // 2), k // 2 + 1) if k % 2 else range(k)
    return [(a * step, b * step, c * step) for a, b, c in itertools.product(r, r, r)]


def _reference(in_coords, out_coords, k, step):
    """{offset index: sorted [(in row, out row)]}: output u reads input u + d."""
    where = {tuple(c): i for i, c in enumerate(in_coords.tolist())}
    pairs = {}
    for ki, d in enumerate(_offsets(k, step)):
        found = []
        for o, (b, x, y, z) in enumerate(out_coords.tolist()):
            i = where.get((b, x + d[0], y + d[1], z + d[2]))
            if i is not None:
                found.append((i, o))
        pairs[ki] = sorted(found)
    return pairs


def _as_dict(m: km.KernelMap):
    out = {}
    for k, (start, size) in enumerate(zip(m.starts, m.sizes)):
        if k == m.identity:
            out[k] = [(i, i) for i in range(size)]
        else:
            out[k] = sorted(zip(m.in_idx[start:start + size].tolist(), m.out_idx[start:start + size].tolist()))
    return out


@pytest.mark.parametrize("k,dilation,t", [(1, 1, 1), (2, 1, 1), (3, 1, 1), (3, 2, 1), (3, 1, 2), (2, 1, 4), (5, 1, 1)])
def test_submanifold_map_equals_brute_force(k, dilation, t):
    coords = _coords(150, seed=k * 7 + t, step=t, low=-3)  # negative coordinates too
    m = km.submanifold_map(coords, k, dilation, t)
    assert m.n_in == m.n_out == len(coords) and m.identity is not None
    assert _as_dict(m) == _reference(coords, coords, k, t * dilation)


@pytest.mark.parametrize(
    "k,stride,dilation,t", [(2, 2, 1, 1), (3, 2, 1, 1), (1, 2, 1, 1), (3, 2, 2, 1), (2, 2, 1, 2), (3, 3, 1, 1)]
)
def test_downsample_map_equals_brute_force(k, stride, dilation, t):
    coords = _coords(150, seed=k + stride, step=t, low=-4)
    m = km.downsample_map(coords, k, stride, dilation, t)
    s = t * stride
    expected = torch.unique(
        torch.cat([coords[:, :1], torch.div(coords[:, 1:], s, rounding_mode="floor") * s], 1), dim=0
    )
    assert torch.equal(m.out_coords, expected.to(torch.int32))  # sorted (batch, x, y, z): rows grouped by batch
    assert _as_dict(m) == _reference(coords, m.out_coords, k, t * dilation)
    back = m.transposed()
    assert back.n_in == m.n_out and torch.equal(back.in_idx, m.out_idx) and back.transposed() is m


def test_generative_map_reaches_every_site():
    coords = _coords(40, seed=3)
    m = km.generative_map(coords, 3)
    sites = {(b, x - dx, y - dy, z - dz) for b, x, y, z in coords.tolist() for dx, dy, dz in _offsets(3, 1)}
    assert set(map(tuple, m.out_coords.tolist())) == sites
    assert _as_dict(m) == _reference(coords, m.out_coords, 3, 1)


def test_pack_round_trip_and_range_errors():
    c = torch.tensor([[0, -32000, 5, 32000], [32767, 0, 0, 0]], dtype=torch.int32)
    assert torch.equal(km.unpack(km.pack(c)), c)
    with pytest.raises(ValueError, match="coordinates must lie in"):
        km.submanifold_map(torch.tensor([[0, 32767, 0, 0]], dtype=torch.int32), 3)
    with pytest.raises(ValueError, match="batch indices"):
        km.submanifold_map(torch.tensor([[-1, 0, 0, 0]], dtype=torch.int32), 3)


def test_stride_tensor_coordinates_must_be_multiples():
    with pytest.raises(ValueError, match="multiples of 2"):
        SparseTensor(torch.tensor([[0, 1, 0, 0]], dtype=torch.int32), torch.zeros(1, 1), stride=2)


def test_layers_share_maps_through_the_cache():
    x = sparse_collate([(_coords(80, 0, batch=1)[:, 1:], torch.randn(len(_coords(80, 0, batch=1)), 2))])
    net = torch.nn.Sequential(
        spnn.Conv3d(2, 4), spnn.Conv3d(4, 4), spnn.MaxPool3d(2), spnn.Conv3d(4, 4), spnn.Conv3d(4, 4),
        spnn.Conv3d(4, 4, 2, stride=2, transposed=True),
    )
    y = net(x)
    # subm@1 (built, reused), down k2@1 (built by the pool, reused by the transposed conv), subm@2 (built, reused)
    assert x.cache.misses == 3 and x.cache.hits == 3
    assert torch.equal(y.coords, x.coords)
    with pytest.raises(ValueError, match="needs that stride's coordinates"):
        spnn.Conv3d(4, 4, 2, stride=2, transposed=True)(SparseTensor(y.coords * 2, y.feats, stride=2))
