"""SparseTensor, sparse_collate, serialisation and back-end checks: the engine's public contract."""

from __future__ import annotations

import pytest
import torch

from plinth import ConfigError
from plinth_sparsepipe.sparse import SparseTensor, check_backend, sparse_collate
from plinth_sparsepipe.sparse import nn as spnn


def _cloud(n: int, seed: int, c: int = 4, extent: int = 10):
    g = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.randint(0, extent, (n, 3), generator=g), dim=0)
    coords = coords[torch.randperm(len(coords), generator=g)]
    return coords, torch.randn(len(coords), c, generator=g)


def test_collate_batches_in_order_and_keeps_rows():
    clouds = [_cloud(30, 0), _cloud(5, 1), _cloud(50, 2)]
    x = sparse_collate(clouds)
    assert x.coords.dtype == torch.int32 and x.coords.shape == (sum(len(c) for c, _ in clouds), 4)
    assert x.batch_size == 3 and x.stride == 1
    start = 0
    for i, (c, f) in enumerate(clouds):
        rows = slice(start, start + len(c))
        assert torch.equal(x.coords[rows, 0], torch.full((len(c),), i, dtype=torch.int32))
        assert torch.equal(x.coords[rows, 1:], c.to(torch.int32)) and torch.equal(x.feats[rows], f)
        start += len(c)
    sizes = [len(c) for c, _ in clouds]
    assert x.batch_offsets().tolist() == [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]


def test_collate_accepts_numpy_and_rejects_bad_clouds():
    import numpy as np

    x = sparse_collate([(np.array([[0, 0, 0], [1, 2, 3]]), np.ones((2, 1), dtype=np.float32))])
    assert len(x) == 2 and x.batch_size == 1
    with pytest.raises(ValueError, match="cloud 1: coords must be integer"):
        sparse_collate([_cloud(4, 0), (torch.rand(3, 3), torch.rand(3, 4))])
    with pytest.raises(ValueError, match="cloud 0: feats must be"):
        sparse_collate([(torch.zeros(2, 3, dtype=torch.long), torch.rand(3, 4))])
    with pytest.raises(ValueError, match="cloud 1 has duplicate coordinates"):
        sparse_collate([_cloud(4, 0), (torch.tensor([[1, 1, 1], [1, 1, 1]]), torch.rand(2, 4))])
    with pytest.raises(ValueError, match="cloud 1 has 2 feature channels"):
        sparse_collate([_cloud(4, 0), (torch.tensor([[1, 1, 1]]), torch.rand(1, 2))])


def test_constructor_validates():
    with pytest.raises(ValueError, match=r"coords must be \[N, 4\]"):
        SparseTensor(torch.zeros(3, 3, dtype=torch.int32), torch.zeros(3, 1))
    with pytest.raises(TypeError, match="integer"):
        SparseTensor(torch.zeros(3, 4), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="N = 3 rows"):
        SparseTensor(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="stride"):
        SparseTensor(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, 1), stride=0)


def test_dense_round_trip_at_stride():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(2, 5, 6, 7, generator=g) < 0.3
    dense = torch.randn(2, 3, 5, 6, 7, generator=g) * mask[:, None]
    x = SparseTensor.from_dense(dense, mask=mask, stride=4)
    assert int(mask.sum()) == len(x) and bool((x.coords[:, 1:] % 4 == 0).all())
    assert torch.equal(x.dense((5, 6, 7)), dense)
    filled = x.dense((5, 6, 7), fill=float("-inf"))
    assert bool(torch.isinf(filled[~mask[:, None].expand_as(filled)]).all())


def test_replace_and_to_share_or_rebuild_the_cache():
    x = sparse_collate([_cloud(40, 0), _cloud(40, 1)])
    y = spnn.Conv3d(4, 4)(x)
    z = x.replace(x.feats * 2)
    assert z.cache is x.cache and z.coords is x.coords
    spnn.Conv3d(4, 4)(z)
    assert x.cache.hits == 1 and x.cache.misses == 1  # the second layer reused the first layer's map
    moved = y.to("cpu", torch.float64)
    assert moved.feats.dtype == torch.float64 and moved.cache is y.cache
    with pytest.raises(ValueError, match="replace"):
        x.replace(torch.zeros(3, 4))


def test_serialisation_round_trip():
    x = spnn.Conv3d(4, 6, 2, stride=2)(sparse_collate([_cloud(60, 0), _cloud(3, 1), _cloud(60, 2)]))
    coords, feats, stride, offsets = x.to_tensors()
    assert coords.dtype == torch.int32 and stride.tolist() == [2] and offsets.dtype == torch.int64
    assert offsets[-1] == len(x) and len(offsets) == 4
    counts = torch.bincount(x.coords[:, 0].long(), minlength=3)
    assert torch.equal(offsets.diff(), counts)
    y = SparseTensor.from_tensors(coords.clone(), feats.detach().clone(), stride.clone(), offsets.clone())
    assert torch.equal(y.coords, x.coords) and torch.equal(y.feats, x.feats) and y.stride == 2 and y.batch_size == 3
    assert y.cache is not x.cache
    with pytest.raises(ValueError, match="offsets end"):
        SparseTensor.from_tensors(coords, feats, 2, offsets[:-1])


def test_batch_offsets_need_grouped_rows():
    x = SparseTensor(torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.int32), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="not grouped by batch"):
        x.to_tensors()


def test_check_backend():
    check_backend("torch")
    with pytest.raises(ConfigError, match="did you mean 'spconv'"):
        check_backend("spconvv")
    with pytest.raises(ConfigError, match="unknown sparse back end 'minkowski'"):
        check_backend("minkowski")
    with pytest.raises(ConfigError, match="torchsparse"):
        check_backend("torchsparse", device="cpu")  # not installed here; CUDA only anyway
