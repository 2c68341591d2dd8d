"""Back ends agree: spconv (CPU build, with the stream patch applied at runtime) vs torch, forward and gradients.

torchsparse needs CUDA and is not on PyPI: its equality test runs only where it is installed with a GPU.
"""

from __future__ import annotations

import pytest
import torch

from plinth_sparsepipe.sparse import SparseTensor, sparse_collate, use_backend
from plinth_sparsepipe.sparse import nn as spnn
from plinth_sparsepipe.sparse.backends import get_backend, torch_conv
from plinth_sparsepipe.sparse.functional.maps import op_map

from .kernel_helpers import require_compiled


def _tensor(c: int = 3, seed: int = 0, device: str = "cpu") -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, 9, 8, 7, generator=g) < 0.3
    return SparseTensor.from_dense(torch.randn(2, c, 9, 8, 7, generator=g) * mask[:, None], mask=mask).to(device)


CASES = [  # (kernel, stride, transposed)
    (3, 1, False), (3, 1, True), (2, 1, False), (1, 1, False), (3, 2, False), (2, 2, False), (3, 2, True), (2, 2, True),
]


def _kmap(x: SparseTensor, k: int, s: int, transposed: bool):
    if transposed and s > 1:
        return op_map(x, k, s).kmap.transposed()
    return op_map(x, k, s, transposed=transposed).kmap


def _assert_backend_matches_torch(name: str, device: str):
    backend = get_backend(name)
    for k, s, transposed in CASES:
        x = _tensor(device=device)
        kmap = _kmap(x, k, s, transposed)
        g = torch.Generator().manual_seed(k * 10 + s)
        feats = torch.randn(kmap.n_in, 3, generator=g).to(device).requires_grad_(True)
        weight = torch.randn(k**3, 3, 5, generator=g).to(device).requires_grad_(True)
        upstream = torch.randn(kmap.n_out, 5, generator=g).to(device)
        ref = torch_conv.conv(feats, weight, kmap)
        ref_grads = torch.autograd.grad((ref * upstream).sum(), (feats, weight))
        out = backend.conv(feats, weight, kmap)
        grads = torch.autograd.grad((out * upstream).sum(), (feats, weight))
        case = f"k={k} stride={s} transposed={transposed}"
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{case}: {m}")
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4, msg=lambda m: f"{case}: {m}")


def test_spconv_matches_torch():
    pytest.importorskip("spconv", reason="spconv is a test extra of plinth-sparsepipe")
    _assert_backend_matches_torch("spconv", "cpu")


def test_spconv_in_a_network_with_the_default_switch():
    pytest.importorskip("spconv", reason="spconv is a test extra of plinth-sparsepipe")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        spnn.Conv3d(3, 8), spnn.BatchNorm(8), spnn.ReLU(), spnn.Conv3d(8, 8, 2, stride=2),
        spnn.Conv3d(8, 4, 2, stride=2, transposed=True), spnn.GlobalMaxPool(),
    )
    x = _tensor()
    ref = net(x)
    ref.sum().backward()
    ref_grad = net[0].weight.grad.clone()
    net.zero_grad()
    with use_backend("spconv"):
        out = net(_tensor())
        out.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[0].weight.grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_spconv_stream_patch_is_runtime_only():
    spconv_ops = pytest.importorskip("spconv.pytorch.ops")
    import inspect

    get_backend("spconv")
    if not torch.cuda.is_available():
        assert spconv_ops.get_current_stream() == 0
    source = inspect.getsource(__import__("spconv.pytorch.cppcore", fromlist=["x"]))
    assert "torch.cuda.current_stream().cuda_stream" in source  # site-packages untouched


def test_torchsparse_matches_torch_where_installed():
    pytest.importorskip("torchsparse", reason="torchsparse is CUDA-only and not on PyPI")
    if not torch.cuda.is_available():
        pytest.skip("torchsparse needs CUDA")
    _assert_backend_matches_torch("torchsparse", "cuda")


def test_conv_module_backend_argument():
    pytest.importorskip("spconv", reason="spconv is a test extra of plinth-sparsepipe")
    torch.manual_seed(1)
    a = spnn.Conv3d(3, 4, 3, stride=2)
    b = spnn.Conv3d(3, 4, 3, stride=2, backend="spconv")
    b.load_state_dict(a.state_dict())
    x = sparse_collate([(torch.tensor([[0, 0, 0], [1, 2, 3], [4, 4, 4]]), torch.randn(3, 3))])
    torch.testing.assert_close(b(x).feats, a(x).feats)


def test_spconv_is_repeatable_with_two_torch_threads():
    """spconv's CPU ops are wrong in most calls at 2 threads unless the back end runs them on one thread."""
    pytest.importorskip("spconv", reason="spconv is a test extra of plinth-sparsepipe")
    backend = get_backend("spconv")
    x = _tensor()
    kmap = op_map(x, 3).kmap
    g = torch.Generator().manual_seed(0)
    feats, weight = torch.randn(kmap.n_in, 3, generator=g), torch.randn(27, 3, 5, generator=g)
    ref = torch_conv.conv(feats, weight, kmap)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in range(30):
            torch.testing.assert_close(backend.conv(feats, weight, kmap), ref, rtol=1e-5, atol=1e-5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- the compiled kernel (the torch back end's "compiled" dataflow) ------------------------------------------------
def _flows_agree(kmap, c_in=3, c_out=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(kmap.n_in, c_in, generator=g, dtype=torch.float64).requires_grad_(True)
    weight = torch.randn(kmap.kernel_volume, c_in, c_out, generator=g, dtype=torch.float64).requires_grad_(True)
    upstream = torch.randn(kmap.n_out, c_out, generator=g, dtype=torch.float64)
    results = []
    for flow in ("per_offset", "compiled"):
        out = torch_conv.conv(feats, weight, kmap, flow)
        results.append((out, *torch.autograd.grad((out * upstream).sum(), (feats, weight))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_compiled_kernel_on_unsorted_coordinates_and_repeated_rows(monkeypatch):
    """Pairs out of row order (coordinates in random order: the kernel sorts each offset's pairs once) and a map
    whose offsets repeat output and input rows (each tile owns its rows, so repeats are still exact); tiles of
    2 rows so that several threads' tiles and sub-chunks are exercised."""
    from plinth_sparsepipe.sparse.kmap import KernelMap, downsample_map, submanifold_map

    require_compiled()
    monkeypatch.setattr(torch_conv, "compiled_tile_rows", lambda c_in, c_out, itemsize=4, n_rows=None: 2)
    x = _tensor()
    coords = x.coords[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    for kmap in (submanifold_map(coords, 3), downsample_map(coords, 2, 2), downsample_map(coords, 3, 2).transposed()):
        _flows_agree(kmap)
        (fwd_rows, _), (bwd_rows, _) = kmap._compiled_meta[:2]
        assert fwd_rows is not kmap.out_idx or bwd_rows is not kmap.in_idx  # really sorted a copy
    g = torch.Generator().manual_seed(1)
    sizes = [7, 0, 5]
    repeated = KernelMap(torch.randint(0, 4, (12,), generator=g), torch.randint(0, 3, (12,), generator=g), sizes, 4, 3)
    _flows_agree(repeated)


def test_compiled_kernel_rejects_out_of_range_rows():
    from plinth_sparsepipe.sparse.kmap import KernelMap

    require_compiled()
    bad = KernelMap(torch.tensor([0, 5]), torch.tensor([0, 1]), [2], 3, 2)
    with pytest.raises(RuntimeError, match="out of range"):
        torch_conv.conv(torch.randn(3, 2), torch.randn(1, 2, 2), bad, "compiled")


def test_a_failed_build_falls_back_with_one_warning_line(tmp_path):
    """A compiler that fails (CXX=false) and an empty extensions cache: the conv still runs on the PyTorch path,
    stderr holds exactly one line (the warning), no traceback; PLINTH_SPARSE_KERNEL=compiled makes it an error."""
    import os
    import subprocess
    import sys

    script = "\n".join([
        "import torch",
        "from plinth_sparsepipe.sparse import SparseTensor",
        "from plinth_sparsepipe.sparse import functional as spF",
        "from plinth_sparsepipe.sparse.backends import compiled",
        "x = SparseTensor.from_dense(torch.randn(1, 2, 4, 4, 4))",
        "w = torch.randn(27, 2, 3, requires_grad=True)",
        "spF.conv3d(x, w, kernel_size=3).feats.sum().backward()",
        "spF.conv3d(x, w, kernel_size=3)",  # a second conv neither retries the build nor warns again
        "print('ok', compiled.available(), w.grad.shape[0])",
    ])
    env = dict(os.environ, CXX="false", TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), PLINTH_SPARSE_KERNEL="auto")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", "False", "27"]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "Traceback" not in run.stderr
    assert len([line for line in lines if "compiled sparse conv kernel unavailable" in line]) == 1, run.stderr
    assert all(line.startswith(" ") or "compiled sparse conv kernel unavailable" in line for line in lines), lines
    forced = subprocess.run([sys.executable, "-c", script], env=dict(env, PLINTH_SPARSE_KERNEL="compiled"),
                            capture_output=True, text=True, timeout=120)
    assert forced.returncode != 0 and "PLINTH_SPARSE_KERNEL=compiled but building" in forced.stderr
