"""Builder: random valid genomes build, run forward and backward, and have no dead parameters."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dla_nas
from dla_nas import Genome, GenomeError, build_model
from dla_nas.arch import zoo
from dla_nas.arch.blocks import Root


@st.composite
def genomes(draw):
    block = draw(st.sampled_from(["basic", "bottleneck", "bottleneckx"]))
    cardinality = draw(st.sampled_from([1, 2, 4]))
    n_stem = draw(st.integers(1, 2))
    n_stages = draw(st.integers(1, 4))
    # bottleneckx needs channels that are a multiple of 32 (official mid-width rule)
    widths = [32, 64] if block == "bottleneckx" else [4, 8, 12, 16]
    stem_levels = [
        {"channels": draw(st.sampled_from([4, 8])), "convs": draw(st.integers(1, 2)),
         "stride": draw(st.sampled_from([1, 2]))}
        for _ in range(n_stem)
    ]
    stages = []
    for i in range(n_stages):
        stages.append({
            "channels": draw(st.sampled_from(widths)),
            "depth": draw(st.integers(1, 3)),
            "fan_in": draw(st.integers(2, 3)),
            "stride": draw(st.sampled_from([1, 2])),
            "level_root": draw(st.booleans()),
            "root_kernel": draw(st.sampled_from([1, 3])),
            "root_residual": draw(st.booleans()),
            "ida_from": draw(st.lists(st.integers(0, max(i - 2, 0)), max_size=2)) if i >= 2 else [],
        })
    return Genome.from_dict({
        "block": block, "cardinality": cardinality,
        "stem": {"kernel": draw(st.sampled_from([3, 5])), "stride": 1, "levels": stem_levels},
        "stages": stages,
    })


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genome=genomes(), size=st.sampled_from([8, 13, 32]), classes=st.sampled_from([2, 10]))
def test_random_genomes_forward_backward_every_parameter_gets_a_gradient(genome, size, classes):
    model = build_model(genome, num_classes=classes, in_chans=3)
    x = torch.randn(2, 3, size, size)
    if size < genome.min_input_size():
        with pytest.raises(GenomeError, match="too small"):
            model(x)
        return
    out = model(x)
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert dead == []
    feats = model.forward_features(x)
    assert [f.shape[1] for f in feats] == [i["num_chs"] for i in model.feature_info]
    assert [f.shape[-1] for f in feats] == genome.feature_sizes(size)


def test_fan_in_three_root_widths_follow_the_reference():
    genome = Genome.from_dict({
        "stem": {"kernel": 3, "levels": [{"channels": 8}]},
        "stages": [{"channels": 16, "depth": 2, "fan_in": 3, "level_root": True}],
    })
    model = build_model(genome, num_classes=10)
    tree = model.level1
    # first k-1 subtrees start fresh: their roots see only their k blocks
    assert tree.tree1.root.conv.in_channels == 3 * 16
    assert tree.tree2.root.conv.in_channels == 3 * 16
    # the last subtree inherits: stage input (8), then the 2 earlier subtree outputs
    assert tree.tree3.root.conv.in_channels == 3 * 16 + 8 + 2 * 16
    assert not hasattr(tree, "tree4")


def test_ida_edge_joins_the_last_root():
    d = {
        "stem": {"kernel": 3, "levels": [{"channels": 8}]},
        "stages": [{"channels": 8, "level_root": False}, {"channels": 16}, {"channels": 32, "ida_from": [0]}],
    }
    model = build_model(Genome.from_dict(d), num_classes=10)
    assert model.level3.root.conv.in_channels == 2 * 32 + 16 + 8
    del d["stages"][2]["ida_from"]
    assert build_model(Genome.from_dict(d), num_classes=10).level3.root.conv.in_channels == 2 * 32 + 16


def test_dla34_keeps_the_official_module_names_and_root_widths():
    state = build_model("dla34", num_classes=1000).state_dict()
    # dla34 level3 root: cat[x2(128), x1(128), bottom(64), tree1_out(128)] = 448 channels
    assert state["level3.tree2.root.conv.weight"].shape == (128, 448, 1, 1)
    assert state["level2.project.0.weight"].shape == (64, 32, 1, 1)
    assert state["fc.weight"].shape == (1000, 512, 1, 1)
    assert "base_layer.0.weight" in state and "level1.0.weight" in state
    # the official code's unused projection in depth>1 trees is not created
    assert "level3.project.0.weight" not in state


def test_cardinality_is_per_instance():
    a = build_model("dla102x2", num_classes=10)
    b = build_model("dla102x", num_classes=10)
    assert a.level5.tree1.conv2.groups == 64
    assert b.level5.tree1.conv2.groups == 32


def test_official_init_statistics():
    model = build_model("dla34", num_classes=10)
    w = model.level5.tree1.conv1.weight
    assert abs(w.std().item() - (2 / (9 * 512)) ** 0.5) < 1e-3
    assert (model.level5.tree1.bn2.weight == 1).all()


def test_torch_init_keeps_pytorch_defaults_and_a_small_classifier():
    """``init="torch"`` (the trainer's default) leaves the layers as PyTorch made them: convs
    kaiming-uniform with a = sqrt(5), std 1 / sqrt(3 * fan_in), and the 1x1 classifier too,
    where the official init gives it std sqrt(2 / classes)."""
    model = build_model("plain_cnn", num_classes=6, init="torch", zero_init_residual=True)
    conv = model.level1.block1.conv1.weight  # 3x3, 32 -> 64
    assert abs(conv.std().item() - (1 / (3 * 9 * 32)) ** 0.5) < 3e-3
    assert model.fc.weight.std().item() < 1.2 * (1 / (3 * 64)) ** 0.5
    official = build_model("plain_cnn", num_classes=6)
    assert abs(official.fc.weight.std().item() - (2 / 6) ** 0.5) < 0.1
    with pytest.raises(GenomeError, match="init: 'kaiming' is not allowed"):
        build_model("plain_cnn", num_classes=6, init="kaiming")


def test_zero_init_residual_zeroes_last_bn_of_blocks_and_residual_roots():
    model = build_model("dla102", num_classes=10, zero_init_residual=True)
    assert (model.level5.tree1.bn3.weight == 0).all()
    assert all((m.bn.weight == 0).all() for m in model.modules() if isinstance(m, Root))
    plain = build_model("dla34", num_classes=10, zero_init_residual=True)
    # roots without a residual keep gamma 1: zeroing them would cut the signal
    assert all((m.bn.weight == 1).all() for m in plain.modules() if isinstance(m, Root))
    assert (plain.level5.tree2.bn2.weight == 0).all()


def test_input_too_small_is_a_clear_error():
    model = build_model("dla34", num_classes=10)
    with pytest.raises(GenomeError, match="at least 17 px"):
        model(torch.randn(1, 3, 16, 16))


def test_any_input_size_at_least_the_minimum_works():
    model = build_model("dla34_cifar", num_classes=10).eval()
    for size in (8, 17, 45):
        assert model(torch.randn(1, 3, size, size + 3)).shape == (1, 10)


def test_build_from_path_and_from_genome_give_the_same_network(tmp_path):
    path = tmp_path / "g.yaml"
    zoo.load("dla46_c").to_yaml(path)
    a = build_model(str(path), num_classes=7, in_chans=1)
    b = build_model(zoo.load("dla46_c"), num_classes=7, in_chans=1)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    assert a.base_layer[0].in_channels == 1


@pytest.mark.parametrize("spec, message", [
    ("not-a-net", "neither a zoo name"),
    ("missing.yaml", "missing.yaml: no such file"),
])
def test_bad_genome_spec(spec, message):
    with pytest.raises(GenomeError, match=message):
        build_model(spec)


def test_bad_num_classes():
    with pytest.raises(GenomeError, match="num_classes: 0 is not allowed"):
        dla_nas.build_model("dla34", num_classes=0)


def test_max_pool_is_the_ceil_mode_max_pool_with_and_without_autograd():
    """On the CPU the pool runs in channels_last order (faster): the same values and
    gradients as PyTorch's, an odd side rounded up, and an NCHW tensor back for the next
    layer."""
    import torch.nn.functional as F

    from dla_nas.arch.blocks import max_pool

    for shape, k in [((2, 3, 7, 9), 2), ((1, 4, 8, 8), 2), ((3, 2, 10, 11), 3)]:
        x = torch.randn(*shape)
        expected = F.max_pool2d(x, k, k, ceil_mode=True)
        with torch.no_grad():
            fast = max_pool(x, k)
        assert torch.equal(fast, expected) and fast.is_contiguous()
        x.requires_grad_(True)
        weights = torch.randn_like(expected)  # a gradient that differs per output cell
        (F.max_pool2d(x, k, k, ceil_mode=True) * weights).sum().backward()
        expected_grad, x.grad = x.grad, None
        out = max_pool(x, k)
        (out * weights).sum().backward()
        assert torch.equal(out, expected) and out.is_contiguous()
        assert torch.equal(x.grad, expected_grad) and x.grad.is_contiguous()
