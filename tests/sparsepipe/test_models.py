"""Point-cloud models: the architectures the issue names (checked layer by layer and against a dense reference),
their named blocks for part 2, width multipliers, initialisation, and checkpoints that rebuild them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from plinth_sparsepipe.models import (DenseVGG16BN, SparseResNet, SparseUNet, SparseVGG16BN, build_model,
                                      load_checkpoint, model_from_config, save_checkpoint)
from plinth_sparsepipe.models.options import DenseVGGOptions, SparseVGGOptions
from plinth_sparsepipe.sparse import SparseTensor, sparse_collate
from plinth_sparsepipe.sparse import nn as spnn

pytestmark = pytest.mark.usefixtures("one_thread")
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def surface_batch(batch=2, side=12, seed=0, channels=1):
    """Clouds of voxels on random spheres' shells (surface-like, as real inputs are)."""
    g = torch.Generator().manual_seed(seed)
    clouds = []
    grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for _ in range(batch):
        centre = side / 2 + torch.rand(3, generator=g)
        r = side / 3 + torch.rand(1, generator=g)
        d = (grid.float() + 0.5 - centre).norm(dim=1)
        coords = grid[(d - r).abs() < 1.0]
        clouds.append((coords, torch.randn(len(coords), channels, generator=g)))
    return sparse_collate(clouds)


def test_sparse_vgg16_bn_is_configuration_d_as_the_paper_builds_it():
    m = SparseVGG16BN(1, 40)
    convs = [mod for mod in m.modules() if isinstance(mod, spnn.Conv3d)]
    assert [c.out_channels for c in convs] == [v for v in CFG_D if v != "M"]
    assert all(c.kernel_size == 3 and c.stride == 1 and c.bias is None and not c.transposed for c in convs)
    assert all(c.submanifold is not False for c in convs)  # stride 1 = submanifold
    pools = [mod for mod in m.modules() if isinstance(mod, spnn.MaxPool3d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    names = [n for n, _ in m.blocks()]
    assert names[:3] == ["conv1_1", "conv1_2", "pool1"] and names[-4:] == ["global_pool", "fc1", "fc2", "classifier"]
    for name, _ in m.blocks():  # every conv block is conv -> BN -> ReLU
        if name.startswith("conv"):
            block = getattr(m, name)
            assert isinstance(block.bn, spnn.BatchNorm) and isinstance(block.relu, spnn.ReLU)
    assert isinstance(m.global_pool, spnn.GlobalMaxPool)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(512, 4096), (4096, 4096), (4096, 40)]
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.5, 0.5]
    assert m.pipelinable and m.task == "classification" and m.input_kind == "sparse"


def test_kaiming_normal_fan_out_initialisation():
    torch.manual_seed(0)
    m = SparseVGG16BN(1, 10)
    w = m.conv4_2.conv.weight  # [27, 512, 512]
    assert w.std().item() == pytest.approx(math.sqrt(2 / (27 * 512)), rel=0.01)
    assert abs(w.mean().item()) < 1e-4
    assert torch.all(m.conv1_1.bn.weight == 1) and torch.all(m.conv1_1.bn.bias == 0)
    d = DenseVGG16BN(1, 10, DenseVGGOptions(width=0.5))
    assert d.conv4_2.conv.weight.std().item() == pytest.approx(math.sqrt(2 / (27 * 256)), rel=0.02)


def test_width_multiplier_scales_every_channel_count():
    m = SparseVGG16BN(3, 5, SparseVGGOptions(width=0.25))
    convs = [mod for mod in m.modules() if isinstance(mod, spnn.Conv3d)]
    assert [c.out_channels for c in convs] == [v // 4 for v in CFG_D if v != "M"]
    assert convs[0].in_channels == 3
    assert [(l.in_features, l.out_features) for l in m.modules() if isinstance(l, nn.Linear)] == [
        (128, 1024), (1024, 1024), (1024, 5)]
    r = build_model({"name": "sparse_resnet", "width": 0.5, "channels": [16, 32], "blocks": [1, 2]}, 1, 3)
    assert [n for n, _ in r.blocks()] == ["stem", "stage1", "down2", "stage2", "global_pool", "head"]
    assert r.head[1].in_features == 16 and len(r.stage2) == 2


def dense_reference(sparse: SparseVGG16BN) -> DenseVGG16BN:
    """The dense VGG16-BN with the sparse model's weights (conv bias 0): the same network on a full grid."""
    opts = sparse.options
    dense = DenseVGG16BN(sparse.in_channels, sparse.num_classes, DenseVGGOptions(**{**opts.model_dump(),
                                                                                   "name": "dense_vgg16_bn"}))
    sd = {}
    for name, _ in sparse.blocks():
        if name.startswith("conv"):
            s = getattr(sparse, name)
            w = s.conv.weight  # [27, cin, cout], offset (a, b, c) at a*9 + b*3 + c
            sd[f"{name}.conv.weight"] = w.permute(2, 1, 0).reshape(w.shape[2], w.shape[1], 3, 3, 3)
            sd[f"{name}.conv.bias"] = torch.zeros(w.shape[2])
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                sd[f"{name}.bn.{k}"] = getattr(s.bn, k)
    for k, v in sparse.state_dict().items():
        if k.startswith(("fc1", "fc2", "classifier")):
            sd[k] = v
    dense.load_state_dict(sd)
    return dense


def test_sparse_vgg_on_a_fully_occupied_grid_equals_the_dense_vgg_with_the_same_weights():
    """On a grid with every voxel active, submanifold conv = zero-padded dense conv, sparse BN over voxels = BN3d,
    sparse 2^3 max pool = max_pool3d: the whole sparse VGG16-BN must equal the dense one (train-mode BN too).
    In float64: float32 batch-norm backward over 65k voxels is only good to ~1e-3 on one CPU thread."""
    torch.manual_seed(0)
    sparse = SparseVGG16BN(1, 4, SparseVGGOptions(width=1 / 16, dropout=0.0, hidden=64))
    dense = dense_reference(sparse).double()
    sparse = sparse.double()
    side = 32  # five pools: 32 -> 1
    grid = torch.rand(2, 1, side, side, side, dtype=torch.float64)
    x = SparseTensor.from_dense(grid, mask=torch.ones(2, side, side, side, dtype=torch.bool))
    assert len(x) == 2 * side**3
    out_sparse = sparse.train()(x)
    out_dense = dense.train()(grid)
    torch.testing.assert_close(out_sparse, out_dense, rtol=1e-9, atol=1e-9)
    weights = torch.randn_like(out_dense)
    (out_sparse * weights).sum().backward()
    (out_dense * weights).sum().backward()
    for name in ("conv1_1", "conv3_2", "conv5_3"):
        g = getattr(sparse, name).conv.weight.grad  # [27, cin, cout]
        torch.testing.assert_close(g.permute(2, 1, 0).reshape(g.shape[2], g.shape[1], 3, 3, 3),
                                   getattr(dense, name).conv.weight.grad, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(sparse.fc1[0].weight.grad, dense.fc1[0].weight.grad, rtol=1e-8, atol=1e-9)


def test_dense_baseline_takes_a_32_cubed_occupancy_grid():
    m = DenseVGG16BN(1, 7, DenseVGGOptions(width=1 / 16, hidden=32))
    assert sum(isinstance(x, nn.Conv3d) for x in m.modules()) == 13
    assert sum(isinstance(x, nn.BatchNorm3d) for x in m.modules()) == 13
    assert sum(isinstance(x, nn.MaxPool3d) for x in m.modules()) == 5
    out = m(torch.zeros(3, 1, 32, 32, 32))
    assert out.shape == (3, 7) and m.input_kind == "dense"


@pytest.mark.parametrize("name,opts", [("sparse_vgg16_bn", {"width": 1 / 16, "hidden": 32}),
                                       ("sparse_resnet", {"width": 0.25})])
def test_chain_models_forward_is_the_composition_of_their_blocks(name, opts):
    torch.manual_seed(0)
    m = build_model({"name": name, **opts}, 1, 3).eval()
    x = surface_batch()
    y = x
    for _, block in m.blocks():
        y = block(y)
    torch.testing.assert_close(m(x), y)
    names = [n for n, _ in m.blocks()]
    assert len(set(names)) == len(names)
    assert {k.split(".")[0] for k in m.state_dict()} <= set(names)  # state-dict prefixes are block names


def test_unet_gives_per_voxel_logits_at_the_input_coordinates_and_is_not_a_chain():
    torch.manual_seed(0)
    m = SparseUNet(3, 5, build_model({"name": "sparse_unet", "width": 0.25}, 3, 5).options).eval()
    x = surface_batch(channels=3, side=14)
    out = m(x)
    assert torch.equal(out.coords, x.coords) and out.feats.shape == (len(x), 5) and out.stride == 1
    assert not m.pipelinable and m.task == "segmentation"
    assert [n for n, _ in m.blocks()] == ["stem", "enc1", "enc2", "enc3", "dec3", "dec2", "dec1", "head"]
    # skips line up voxel by voxel: moving the scene by a multiple of the coarsest stride moves nothing else
    shifted = SparseTensor(x.coords + torch.tensor([0, 8, 16, -8], dtype=torch.int32), x.feats)
    torch.testing.assert_close(m(shifted).feats, out.feats, rtol=1e-5, atol=1e-5)


def test_options_are_validated_with_clear_messages():
    with pytest.raises(ValueError, match="sparse_vgg16_bn"):
        build_model({"name": "vgg"}, 1, 2)
    with pytest.raises(ValueError, match="one entry per stage"):
        build_model({"name": "sparse_resnet", "channels": [8, 16], "blocks": [1]}, 1, 2)
    with pytest.raises(ValueError, match="decoder"):
        build_model({"name": "sparse_unet", "channels": [8, 16, 32], "decoder": [8]}, 1, 2)
    with pytest.raises(ValueError, match="width"):
        build_model({"name": "sparse_resnet", "width": 0}, 1, 2)


@pytest.mark.parametrize("name", ["sparse_vgg16_bn", "sparse_resnet", "sparse_unet", "dense_vgg16_bn"])
def test_checkpoint_rebuilds_the_model_from_its_json_config(tmp_path, name):
    torch.manual_seed(1)
    m = build_model({"name": name, "width": 1 / 16}, 2, 3)
    config = json.loads(json.dumps(m.config()))  # JSON-able
    assert type(model_from_config(config)) is type(m)
    for p in m.parameters():  # not the initial weights: what is saved must be what comes back
        p.data.add_(0.01)
    save_checkpoint(tmp_path / "ck", m, task=m.task, classes=["a", "b", "c"])
    back, cfg = load_checkpoint(tmp_path / "ck")
    assert cfg["model"] == config and cfg["classes"] == ["a", "b", "c"]
    for (k, a), (k2, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    from safetensors import safe_open  # any safetensors reader opens the weights

    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(m.state_dict())
    x = torch.rand(2, 2, 32, 32, 32) if m.input_kind == "dense" else surface_batch(channels=2)
    a, b = m.eval()(x), back(x)
    torch.testing.assert_close(getattr(a, "feats", a), getattr(b, "feats", b))


def test_a_folder_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    from plinth.errors import ConfigError

    with pytest.raises(ConfigError, match="not a point-cloud checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"schema": "something else"}')
    with pytest.raises(ConfigError, match="schema"):
        load_checkpoint(tmp_path)


def test_models_package_imports_no_torch_until_used():
    import subprocess
    import sys

    code = ("import sys; import plinth_sparsepipe.models, plinth_sparsepipe.models.options, "
            "plinth_sparsepipe.train.config; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
