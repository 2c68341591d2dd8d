"""Exactness: sparse conv / transposed conv / pooling forward and gradients equal torch's dense ops on the grid.

The dense reference is torch.nn.functional on the densified grid (an independent implementation). Semantics
compared (documented in docs/plugins/sparsepipe.md, "Sparse engine"):
- submanifold, odd k: conv3d(padding=d*(k//2)) read at the input sites; even k: offsets 0..k-1, i.e. conv3d on
  the grid padded on the high side by d*(k-1).
- strided (stride s): conv3d(stride=s, padding=d*(k//2) for odd k, 0 for even) read at the output sites
  floor(c/s)*s only (dense conv also produces values elsewhere; those sites do not exist in the sparse output).
- transposed: conv_transpose3d(stride=s, same padding) read at the fine (input-of-the-strided-conv) sites.
- generative (stride 1, submanifold=False): conv3d everywhere; all other sites are zero in both.
- max pooling: max_pool3d on the grid filled with -inf at empty sites; average: avg_pool3d(feats)/avg_pool3d(occupancy).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from plinth_sparsepipe.sparse import SparseTensor, sparse_collate
from plinth_sparsepipe.sparse import functional as spF
from plinth_sparsepipe.sparse.backends import torch_conv

from .kernel_helpers import require_compiled

SHAPE = (7, 6, 8)
ATOL = 1e-4


@pytest.fixture(params=["per_offset", "fused", "compiled", "per_offset_chunked", "fused_chunked", "compiled_chunked"])
def dataflow(request, monkeypatch):
    """Every dataflow, each also with tiny chunks (tiles of 3 rows for the compiled kernel) so that every offset
    spans several gather-GEMM-scatter steps."""
    flow = request.param.replace("_chunked", "")
    if flow == "compiled":
        require_compiled()
    monkeypatch.setattr(torch_conv, "choose_dataflow", lambda kmap, ci, co, feats=None: flow)
    if request.param.endswith("_chunked"):
        monkeypatch.setattr(torch_conv, "_chunk_rows", lambda kmap, width: 3)
        monkeypatch.setattr(torch_conv, "_CHUNK_ELEMENTS", 40)
        monkeypatch.setattr(torch_conv, "compiled_tile_rows", lambda c_in, c_out, itemsize=4, n_rows=None: 3)
    return request.param


def _grid(c: int, seed: int, batch: int = 2, p: float = 0.35, shape=SHAPE, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, *shape, generator=g) < p
    dense = torch.randn(batch, c, *shape, generator=g, dtype=dtype) * mask[:, None]
    return dense, mask


def _leaf_pair(dense, mask, stride=1):
    """A dense leaf and a sparse tensor whose feats are an independent leaf with the same values."""
    x = SparseTensor.from_dense(dense, mask=mask, stride=stride)
    x.feats.requires_grad_(True)
    d = dense.clone().requires_grad_(True)
    return x, d


def _dense_weight(w: torch.Tensor, k: int, transposed: bool = False) -> torch.Tensor:
    """[k^3, Cin, Cout] -> conv3d's [Cout, Cin, k, k, k] (or conv_transpose3d's [Cin, Cout, k, k, k])."""
    w = w.view(k, k, k, w.shape[1], w.shape[2])
    return w.permute(3, 4, 0, 1, 2) if transposed else w.permute(4, 3, 0, 1, 2)


def _site_mask(t: SparseTensor, shape) -> torch.Tensor:
    return t.replace(torch.ones(len(t), 1)).dense(shape)[:, 0].bool()


def _fit(d: torch.Tensor, shape) -> torch.Tensor:
    """Crop or zero-pad the spatial dims of [B, C, X, Y, Z] to `shape`."""
    d = d[:, :, : shape[0], : shape[1], : shape[2]]
    pad = []
    for have, want in zip(reversed(d.shape[2:]), reversed(shape)):
        pad += [0, want - have]
    return F.pad(d, pad)


def _compare_grads(x, d, w_sparse, w_dense, mask, k, transposed=False):
    assert torch.allclose(x.feats.grad, d.grad.permute(0, 2, 3, 4, 1)[mask], atol=ATOL)
    assert torch.allclose(_dense_weight(w_sparse.grad, k, transposed), w_dense.grad, atol=ATOL)


def _weights(k, c_in, c_out, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k**3, c_in, c_out, generator=g).requires_grad_(True)
    return w, _dense_weight(w.detach(), k).clone().requires_grad_(True)


def _dense_conv(d, wd, k, stride, dilation):
    if k % 2:
        return F.conv3d(d, wd, stride=stride, padding=dilation * (k // 2), dilation=dilation)
    r = dilation * (k - 1) + stride
    return F.conv3d(F.pad(d, (0, r, 0, r, 0, r)), wd, stride=stride, dilation=dilation)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels", [(1, 2), (3, 5), (8, 4)])
def test_conv_forward_and_grads_match_dense(k, stride, channels, dataflow):
    c_in, c_out = channels
    dense, mask = _grid(c_in, seed=k * 10 + stride)
    x, d = _leaf_pair(dense, mask)
    w, wd = _weights(k, c_in, c_out, seed=k + stride)
    y = spF.conv3d(x, w, kernel_size=k, stride=stride)
    ref = _dense_conv(d, wd, k, stride, 1)
    out_shape = tuple(-(-s // stride) for s in SHAPE)
    ref = _fit(ref, out_shape)
    sites = _site_mask(y, out_shape)
    if stride == 1:
        assert torch.equal(y.coords, x.coords)
    assert len(y) == int(sites.sum())
    assert torch.allclose(y.dense(out_shape), ref * sites[:, None], atol=ATOL)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5))
    (y.dense(out_shape) * g).sum().backward()
    (ref * sites[:, None] * g).sum().backward()
    _compare_grads(x, d, w, wd, mask, k)


@pytest.mark.parametrize("k,stride", [(3, 1), (2, 2), (3, 2)])
def test_dilated_conv_matches_dense(k, stride, dataflow):
    dense, mask = _grid(3, seed=7, shape=(9, 9, 9))
    x, d = _leaf_pair(dense, mask)
    w, wd = _weights(k, 3, 4, seed=1)
    y = spF.conv3d(x, w, kernel_size=k, stride=stride, dilation=2)
    out_shape = tuple(-(-9 // stride) for _ in range(3))
    ref = _fit(_dense_conv(d, wd, k, stride, 2), out_shape)
    sites = _site_mask(y, out_shape)
    assert torch.allclose(y.dense(out_shape), ref * sites[:, None], atol=ATOL)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    (y.dense(out_shape) * g).sum().backward()
    (ref * sites[:, None] * g).sum().backward()
    _compare_grads(x, d, w, wd, mask, k)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("channels", [(2, 3), (6, 6)])
def test_transposed_conv_reuses_the_strided_map_and_matches_conv_transpose3d(k, channels, dataflow):
    c_mid, c_out = channels
    fine_dense, fine_mask = _grid(2, seed=k)
    fine = SparseTensor.from_dense(fine_dense, mask=fine_mask)
    w_down, _ = _weights(k, 2, c_mid, seed=3)
    coarse = spF.conv3d(fine, w_down.detach(), kernel_size=k, stride=2)
    misses = fine.cache.misses
    coarse_shape = tuple(-(-s // 2) for s in SHAPE)
    y_dense = coarse.dense(coarse_shape)
    x, d = _leaf_pair(y_dense, _site_mask(coarse, coarse_shape), stride=2)
    x.cache = coarse.cache  # the same batch: the coarse tensor knows the fine coordinates
    w, _ = _weights(k, c_mid, c_out, seed=4)
    wd = _dense_weight(w.detach(), k, transposed=True).clone().requires_grad_(True)
    up = spF.conv3d(x, w, kernel_size=k, stride=2, transposed=True)
    assert fine.cache.misses == misses and fine.cache.hits >= 1  # reused the strided conv's map
    assert torch.equal(up.coords, fine.coords) and up.stride == 1
    p = k // 2 if k % 2 else 0  # conv_transpose3d's padding crops both ends; crop the low end only
    ref = _fit(F.conv_transpose3d(d, wd, stride=2)[:, :, p:, p:, p:], SHAPE)
    assert torch.allclose(up.dense(SHAPE), ref * fine_mask[:, None], atol=ATOL)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(9))
    (up.dense(SHAPE) * g).sum().backward()
    (ref * fine_mask[:, None] * g).sum().backward()
    cmask = _site_mask(coarse, coarse_shape)
    _compare_grads(x, d, w, wd, cmask, k, transposed=True)


def test_generative_conv_equals_dense_conv_everywhere(dataflow):
    dense, mask = _grid(3, seed=11, p=0.1)
    x, d = _leaf_pair(dense, mask)
    w, wd = _weights(3, 3, 4, seed=0)
    y = spF.conv3d(x, w, kernel_size=3, submanifold=False)
    ref = F.conv3d(F.pad(d, (2,) * 6), wd)  # output sites reach one voxel beyond the grid on each side
    assert len(y) > len(x)
    shifted = SparseTensor(y.coords + torch.tensor([0, 1, 1, 1], dtype=torch.int32), y.feats)
    assert torch.allclose(shifted.dense(ref.shape[2:]), ref, atol=ATOL)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))
    (shifted.dense(ref.shape[2:]) * g).sum().backward()
    (ref * g).sum().backward()
    _compare_grads(x, d, w, wd, mask, 3)


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (3, 1)])
def test_max_pool_matches_dense_max_pool3d(k, stride):
    dense, mask = _grid(4, seed=k + stride)
    x, _ = _leaf_pair(dense, mask)
    d = torch.where(mask[:, None], dense, torch.tensor(float("-inf"))).requires_grad_(True)
    y = spF.max_pool3d(x, k, stride)
    if k % 2:
        ref = F.max_pool3d(d, k, stride, padding=k // 2)
    else:
        ref = F.max_pool3d(F.pad(d, (0, k, 0, k, 0, k), value=float("-inf")), k, stride)
    out_shape = tuple(-(-s // stride) for s in SHAPE)
    ref = _fit(ref, out_shape)
    sites = _site_mask(y, out_shape)[:, None]
    assert torch.allclose(y.dense(out_shape), torch.where(sites, ref, 0.0), atol=ATOL)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    (y.dense(out_shape) * g).sum().backward()
    torch.where(sites, ref * g, 0.0).sum().backward()
    assert torch.allclose(x.feats.grad, d.grad.permute(0, 2, 3, 4, 1)[mask], atol=ATOL)


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (3, 1)])
def test_avg_pool_matches_dense_over_active_sites(k, stride):
    dense, mask = _grid(4, seed=k * stride)
    x, d = _leaf_pair(dense, mask)
    occ = mask[:, None].to(dense.dtype)
    y = spF.avg_pool3d(x, k, stride)
    pad = k // 2 if k % 2 else 0
    if k % 2:
        s, n = F.avg_pool3d(d, k, stride, pad), F.avg_pool3d(occ, k, stride, pad)
    else:
        r = (0, k, 0, k, 0, k)
        s, n = F.avg_pool3d(F.pad(d, r), k, stride), F.avg_pool3d(F.pad(occ, r), k, stride)
    out_shape = tuple(-(-v // stride) for v in SHAPE)
    s, n = _fit(s, out_shape), _fit(n, out_shape)
    sites = _site_mask(y, out_shape)[:, None]
    ref = torch.where(sites, s / n.clamp(min=1e-12), 0.0)
    assert torch.allclose(y.dense(out_shape), ref, atol=ATOL)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    (y.dense(out_shape) * g).sum().backward()
    (ref * g).sum().backward()
    assert torch.allclose(x.feats.grad, d.grad.permute(0, 2, 3, 4, 1)[mask], atol=ATOL)


def test_global_pools_per_cloud():
    dense, mask = _grid(3, seed=4, batch=3)
    x = SparseTensor.from_dense(dense, mask=mask)
    filled = torch.where(mask[:, None], dense, torch.tensor(float("-inf")))
    assert torch.allclose(spF.global_max_pool(x), filled.flatten(2).max(2).values)
    mean = dense.flatten(2).sum(2) / mask.flatten(1).sum(1, keepdim=True)
    assert torch.allclose(spF.global_avg_pool(x), mean, atol=1e-6)


def test_batched_clouds_do_not_mix(dataflow):
    """Two clouds occupying the same xyz sites: each batched output equals that cloud convolved alone."""
    g = torch.Generator().manual_seed(0)
    coords = torch.unique(torch.randint(0, 6, (80, 3), generator=g), dim=0)
    clouds = [(coords, torch.randn(len(coords), 3, generator=g)) for _ in range(2)]
    w = torch.randn(27, 3, 4, generator=g)
    w2 = torch.randn(27, 4, 2, generator=g)
    batched = sparse_collate(clouds)
    down = spF.conv3d(batched, w, kernel_size=3, stride=2)
    up = spF.conv3d(down, w2, kernel_size=3, stride=2, transposed=True)
    for i, cloud in enumerate(clouds):
        alone = sparse_collate([cloud])
        a_down = spF.conv3d(alone, w, kernel_size=3, stride=2)
        a_up = spF.conv3d(a_down, w2, kernel_size=3, stride=2, transposed=True)
        rows = down.coords[:, 0] == i
        assert torch.equal(down.coords[rows, 1:], a_down.coords[:, 1:])
        assert torch.allclose(down.feats[rows], a_down.feats, atol=ATOL)
        rows = up.coords[:, 0] == i
        assert torch.allclose(up.feats[rows], a_up.feats, atol=ATOL)


def test_chain_at_stride_2_matches_dense(dataflow):
    """Strided conv, then a submanifold conv and a max pool at tensor stride 2, against dense on the coarse grid."""
    dense, mask = _grid(2, seed=21, shape=(8, 8, 8))
    x = SparseTensor.from_dense(dense, mask=mask)
    w1, w1d = _weights(2, 2, 3, seed=1)
    w2, w2d = _weights(3, 3, 3, seed=2)
    y = spF.conv3d(spF.conv3d(x, w1.detach(), kernel_size=2, stride=2), w2.detach(), kernel_size=3)
    ref_down = F.conv3d(dense, w1d.detach(), stride=2)
    coarse_sites = (F.max_pool3d(mask[:, None].float(), 2) > 0)
    ref = F.conv3d(ref_down * coarse_sites, w2d.detach(), padding=1) * coarse_sites
    assert y.stride == 2 and torch.allclose(y.dense((4, 4, 4)), ref, atol=ATOL)
    z = spF.max_pool3d(y, 2)
    ref_z = F.max_pool3d(torch.where(coarse_sites, ref, torch.tensor(float("-inf"))), 2)
    z_sites = _site_mask(z, (2, 2, 2))[:, None]
    assert z.stride == 4 and torch.allclose(z.dense((2, 2, 2)), torch.where(z_sites, ref_z, 0.0), atol=ATOL)


def test_cat_joins_matching_coordinates_only():
    dense, mask = _grid(2, seed=1)
    x = SparseTensor.from_dense(dense, mask=mask)
    y = spF.conv3d(x, torch.randn(27, 2, 3), kernel_size=3)
    z = spF.cat([x, y])
    assert z.num_channels == 5 and z.cache is x.cache and torch.equal(z.feats[:, :2], x.feats)
    down = spF.conv3d(x, torch.randn(8, 2, 2), kernel_size=2, stride=2)
    with pytest.raises(ValueError, match="different coordinates"):
        spF.cat([x, down])


@pytest.mark.parametrize("kind", ["subm", "down", "up"])
@pytest.mark.parametrize("flow", ["per_offset", "fused", "compiled"])
def test_gradcheck_float64(kind, flow):
    from plinth_sparsepipe.sparse.functional.maps import op_map

    if flow == "compiled":
        require_compiled()
    dense, mask = _grid(2, seed=3, shape=(4, 4, 4), dtype=torch.float64, p=0.5)
    x = SparseTensor.from_dense(dense, mask=mask)
    choice = op_map(x, 3, 1 if kind == "subm" else 2)
    kmap = choice.kmap.transposed() if kind == "up" else choice.kmap
    feats = torch.randn(kmap.n_in, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(27, 2, 3, dtype=torch.float64, requires_grad=True)
    fn = {"per_offset": torch_conv.GatherGemmScatter, "fused": torch_conv.FusedGatherGemm,
          "compiled": torch_conv.CompiledGatherGemmScatter}[flow]
    assert torch.autograd.gradcheck(lambda f, w: fn.apply(f, w, kmap), (feats, w))
