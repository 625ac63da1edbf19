"""The official family must come out exactly: params and conv+linear MACs at 224 px."""

import pytest
import torch

import dla_nas
from dla_nas.arch import zoo
from dla_nas.arch.cost import genome_cost, model_cost

# from ../shared/dla-reference.md (num_classes=1000, 1x3x224x224)
TABLE = {
    "dla34": (15_742_104, 3_060_043_776),
    "dla46_c": (1_301_400, 574_269_440),
    "dla46x_c": (1_068_440, 532_723_712),
    "dla60x_c": (1_319_832, 581_294_080),
    "dla60": (22_036_632, 4_235_878_400),
    "dla60x": (17_352_344, 3_516_555_264),
    "dla102": (33_268_888, 7_164_551_168),
    "dla102x": (26_309_272, 5_847_932_928),
    "dla102x2": (41_282_200, 9_283_985_408),
    "dla169": (53_389_720, 11_557_560_320),
}


def test_zoo_lists_the_ten_official_variants_cifar_versions_and_hand_designs():
    assert zoo.official_names() == list(TABLE)
    assert set(zoo.dla_names()) == set(TABLE) | {n + "_cifar" for n in TABLE}
    assert zoo.names() == zoo.dla_names() + list(zoo.HAND_DESIGNS)


@pytest.mark.parametrize("name", list(TABLE))
def test_official_params_and_macs_exact(name):
    params, macs = TABLE[name]
    cost = model_cost(dla_nas.build_model(name, num_classes=1000), (3, 224, 224))
    assert cost.params == params
    assert cost.macs == macs
    # the per-level breakdown adds up to the totals
    assert sum(lc.params for lc in cost.levels) == params
    assert sum(lc.macs for lc in cost.levels) == macs


def test_fvcore_macs_agree_with_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    model = dla_nas.build_model("dla46x_c", num_classes=10).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert model_cost(model, (3, 64, 64)).macs == counter.get_total_flops() // 2


def test_dla34_at_cifar_size_with_official_strides():
    cost = genome_cost(zoo.load("dla34"), (3, 32, 32), num_classes=10)
    assert (cost.params, cost.macs) == (15_234_234, 62_444_544)


def test_cifar_variant_keeps_spatial_detail_at_32px():
    genome = zoo.load("dla34_cifar")
    assert genome.total_stride == 8
    assert genome.feature_sizes(32)[-1] == 4
    assert zoo.load("dla34").feature_sizes(32)[-1] == 1
    out = dla_nas.build_model("dla34_cifar", num_classes=10)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_unknown_zoo_name_lists_the_allowed_names():
    with pytest.raises(dla_nas.GenomeError, match="allowed: dla34, dla46_c"):
        zoo.load("dla35")


def test_cost_does_not_leave_the_model_in_eval_mode():
    model = dla_nas.build_model("dla46_c", num_classes=10)
    model.train()
    model_cost(model, (3, 32, 32))
    assert model.training


def test_cost_is_silent(capfd):
    model_cost(dla_nas.build_model("dla34", num_classes=10), (3, 32, 32))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
