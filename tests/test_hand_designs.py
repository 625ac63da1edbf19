"""The hand designs as genomes: chains without aggregation, plain blocks and pooled
downsampling give the plain CNNs and CIFAR ResNets exactly (params, MACs and function)."""

import pytest
import torch
from torch import nn

from dla_nas import Genome, build_model
from dla_nas.arch import zoo
from dla_nas.arch.cost import count_params, model_cost


# ---- the hand-built references (as dla-nas 0.1 built them) ----------------------------------
def conv_bn(c_in, c_out, k, stride=1):
    return [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=False), nn.BatchNorm2d(c_out)]


class PlainCNN(nn.Module):
    def __init__(self, widths, num_classes, in_chans):
        super().__init__()
        layers, c = [], in_chans
        for w in widths:
            layers += [*conv_bn(c, w, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c_in, c_out, 3, stride), nn.ReLU(),
                                  *conv_bn(c_out, c_out, 3))
        self.shortcut = (nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n, num_classes, in_chans, widths=(16, 32, 64)):
        super().__init__()
        layers, c = [*conv_bn(in_chans, widths[0], 3), nn.ReLU()], widths[0]
        for i, w in enumerate(widths):
            for j in range(n):
                layers.append(ResBlock(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _hand_built(name, num_classes, in_chans):
    if name.startswith("plain_cnn"):
        widths = tuple(int(w) for w in name.split("_")[2:]) or (16, 32, 64)
        return PlainCNN(widths, num_classes, in_chans)
    return CifarResNet((int(name[len("resnet"):]) - 2) // 6, num_classes, in_chans)


def _modules(model, kinds=(nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
    return [m for m in model.modules() if isinstance(m, kinds)]


def _copy_weights(hand: nn.Module, built: nn.Module) -> None:
    """Copy the hand-built weights into the genome's network, layer by layer in the order
    each computes them (a ResNet's shortcut follows its block's convs in both)."""
    src = _modules(hand)
    dst = [m for m in _ordered(built)]
    assert len(src) == len(dst)
    for a, b in zip(src, dst):
        for key, value in a.state_dict().items():
            b.state_dict()[key].copy_(value.reshape(b.state_dict()[key].shape))


def _ordered(model):
    """The genome network's conv/BN layers, each chain's projection right after its first
    block (where the hand-built ResNet has its shortcut), then the head."""
    out = []
    for name, module in model.named_children():
        if name.startswith("level") and getattr(module, "project", None) is not None:
            first = _modules(module.block1)
            rest = [m for m in _modules(module) if all(m is not f for f in first)]
            proj = _modules(module.project)
            out += first + proj + [m for m in rest if all(m is not p for p in proj)]
        else:
            out += _modules(module)
    return out


@pytest.mark.parametrize("name", ["plain_cnn", "plain_cnn_8_16_32", "plain_cnn_32_64_128",
                                  "plain_cnn_8_16", "resnet8", "resnet14", "resnet20"])
@pytest.mark.parametrize("in_chans, size", [(3, 32), (1, 64), (1, 15)])
def test_hand_designs_come_out_exactly(name, in_chans, size):
    hand = _hand_built(name, 6, in_chans)
    built = build_model(name, 6, in_chans)
    shape = (in_chans, size, size)
    assert count_params(built) == count_params(hand)
    assert model_cost(built, shape).macs == model_cost(hand, shape).macs
    _copy_weights(hand, built)
    x = torch.randn(2, *shape)
    hand.eval(), built.eval()
    torch.testing.assert_close(built(x), hand(x), rtol=1e-5, atol=1e-5)


def test_hand_designs_are_zoo_names_with_their_own_hashes():
    for name in zoo.HAND_DESIGNS:
        assert name in zoo.names() and zoo.load(name).name == name
    hashes = {zoo.load(n).canonical_hash() for n in zoo.names()}
    assert len(hashes) == len(zoo.names())
    assert zoo.load("resnet32").stages[2].blocks == 5
    with pytest.raises(Exception, match=r"resnet9.*6n\+2"):
        zoo.load("resnet9")


def test_a_chain_of_one_block_is_not_a_depth_1_tree():
    tree = Genome.from_dict({"stem": {"levels": [{"channels": 8}]},
                             "stages": [{"channels": 16, "level_root": False}]})
    chain = Genome.from_dict({"stem": {"levels": [{"channels": 8}]},
                              "stages": [{"channels": 16, "aggregation": "none"}]})
    assert tree.canonical_hash() != chain.canonical_hash()
    assert count_params(build_model(tree, 10)) > count_params(build_model(chain, 10))  # the root
    # the stem width is normalised: the same network hashes the same
    same = Genome.from_dict({"stem": {"channels": 8, "levels": [{"channels": 8}]},
                             "stages": [{"channels": 16, "aggregation": "none"}]})
    assert same.canonical_hash() == chain.canonical_hash()


@pytest.mark.parametrize("aggregation", ["tree", "none"])
@pytest.mark.parametrize("downsample", ["strided", "pool_first", "pool_last"])
@pytest.mark.parametrize("block", ["plain", "basic", "bottleneck"])
def test_every_stage_kind_builds_runs_and_round_trips(aggregation, downsample, block):
    stage = {"channels": 16, "aggregation": aggregation, "downsample": downsample}
    last = {"channels": 32, "ida_from": [0], "level_root": True, "aggregation": aggregation,
            **({"blocks": 2} if aggregation == "none" else {"depth": 2})}
    genome = Genome.from_dict({"block": block, "stem": {"channels": 8, "pool": True},
                               "stages": [stage, {"channels": 16, "stride": 1,
                                                  "aggregation": aggregation}, last]})
    assert Genome.from_dict(genome.to_dict()) == genome
    model = build_model(genome, 5, in_chans=1)
    out = model.forward_features(torch.randn(2, 1, 33, 33))
    assert [f.shape[-1] for f in out] == genome.feature_sizes(33) == [9, 9, 5]
    assert [f.shape[1] for f in out] == [16, 16, 32]
    assert [i["reduction"] for i in model.feature_info] == [4, 4, 8]
    assert model(torch.randn(2, 1, 33, 33)).shape == (2, 5)
    cost = model_cost(model, (1, 33, 33))
    assert sum(level.params for level in cost.levels) == cost.params


def test_plain_blocks_have_no_residual_to_zero():
    model = build_model("plain_cnn", 10, zero_init_residual=True)
    assert all(m.weight.abs().sum() > 0 for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))


def test_genomes_of_the_committed_0_1_runs_keep_their_hashes():
    """The fields added after 0.1 are left out of to_dict at their defaults, so the genomes of
    the committed reference runs (written by 0.1) hash as they did."""
    import json
    from pathlib import Path

    from dla_nas.arch.backbone_genome import genome_from_dict

    root = Path(__file__).resolve().parent.parent / "results"
    checked = 0
    for path in sorted(root.glob("reference-*/trials.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("genome") and not record["hash"].startswith("plain-"):
                assert genome_from_dict(record["genome"]).canonical_hash() == record["hash"]
                checked += 1
    assert checked >= 40
