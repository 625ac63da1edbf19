"""Search spaces: parsing, sampling to valid genomes, repairs, size, and clear errors."""

import random
from pathlib import Path

import optuna
import pytest
import yaml

from dla_nas.search.space import SearchSpace, SpaceError
from dla_nas.search.specs import FixedSuggester, RandomSuggester

SPACES = sorted(Path(__file__).resolve().parent.parent.joinpath("search_spaces").glob("*.yaml"))


def minimal(**over):
    raw = {
        "task": {"dataset": "digits", "resolution": 16},
        "genome": {
            "stem": {"levels": [{"channels": 8}]},
            "stages": [{"channels": [8, 16], "stride": 1, "level_root": False},
                       {"channels": {"low": 16, "high": 32, "step": 16}, "depth": [1, 2]}],
        },
    }
    for key, value in over.items():
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return raw


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_shipped_spaces_load_and_sample_valid_genomes(path):
    space = SearchSpace.from_yaml(path)
    rng = random.Random(1)
    for _ in range(30):
        genome, _ = space.sample(RandomSuggester(rng), space.task.resolution or 32)
        genome.validate()
        genome.feature_sizes(space.task.resolution or 32)
    count, _exact = space.count()
    assert count >= 2


def test_defaults_objectives_and_proxy():
    space = SearchSpace.from_dict(minimal())
    assert space.objectives == (("val_acc", "maximize"), ("macs", "minimize"))
    assert space.proxy.epochs == 8 and space.constraints == {}
    assert space.proxy.zero_init_residual


def test_the_proxy_init_reaches_the_trainer_and_the_model():
    from dla_nas.search.evaluator import ProxyEvaluator

    for zero in (True, False):
        space = SearchSpace.from_dict(minimal(proxy={"zero_init_residual": zero}))
        evaluator = ProxyEvaluator(space, "cpu")
        assert evaluator.train_config.zero_init_residual is zero
        genome = space.sample(RandomSuggester(random.Random(0)), 8)[0]
        last_bns = [m.bn2.weight for m in evaluator.build(genome).modules() if hasattr(m, "bn2")
                    and not hasattr(m, "bn3")]
        assert last_bns and all(bool((w == 0).all()) is zero for w in last_bns)


def test_optuna_trial_maps_to_a_genome_define_by_run():
    space = SearchSpace.from_dict(minimal())
    study = optuna.create_study(directions=space.directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    hashes = set()
    for _ in range(8):
        trial = study.ask()
        genome, _ = space.sample(trial, 16)
        assert set(trial.params) >= {"stages[0].channels", "stages[1].depth"}
        hashes.add(genome.canonical_hash())
        study.tell(trial, [0.5, 1.0])
    assert len(hashes) > 1


def test_exact_count_of_a_small_space():
    space = SearchSpace.from_dict(minimal())
    assert space.count() == (2 * 2 * 2, True)  # stage0 channels x stage1 channels x depth


def test_ida_edges_only_from_stages_two_back():
    raw = minimal(**{"genome.stages": {"channels": 8, "ida_from": [False, True]},
                     "genome.num_stages": 4})
    space = SearchSpace.from_dict(raw)
    names = {"stages[2].ida_from.0", "stages[3].ida_from.0", "stages[3].ida_from.1"}
    assert names <= {n for n, _ in space._named_specs()}
    assert "stages[1].ida_from.0" not in {n for n, _ in space._named_specs()}
    values = {n: s.values()[-1] for n, s in space._named_specs()}
    genome, _ = space.sample(FixedSuggester(values), 64)
    assert genome.stages[3].ida_from == (0, 1) and genome.stages[1].ida_from == ()


def test_repairs_are_deterministic_and_reported():
    raw = minimal(**{"genome.stages": {"channels": 20, "stride": 2}, "genome.num_stages": 5,
                     "genome.block": "bottleneckx", "task.resolution": 8})
    space = SearchSpace.from_dict(raw)
    values = {n: s.values()[0] for n, s in space._named_specs()}
    a, repairs = space.sample(FixedSuggester(values), 8)
    b, _ = space.sample(FixedSuggester(values), 8)
    assert a == b
    assert [s.stride for s in a.stages] == [2, 2, 2, 1, 1]  # 8 -> 4 -> 2 -> 1, then no more
    assert all(s.channels == 32 for s in a.stages)
    assert any("stages[3].stride: 2 -> 1" in r for r in repairs)
    assert any("20 -> 32" in r for r in repairs)


def test_width_multiplier_scales_and_rounds_to_the_divisor():
    space = SearchSpace.from_dict(minimal(**{"genome.width_multiplier": [0.5, 2.0]}))
    values = {n: s.values()[0] for n, s in space._named_specs()}
    genome, _ = space.sample(FixedSuggester(values), 16)
    assert genome.stem.levels[0].channels == 8 and genome.stages[1].channels == 8


@pytest.mark.parametrize("over, message", [
    ({"genome.stages.0.fan_in": [1, 2]}, r"genome\.stages\[0\]\.fan_in: 1 is not allowed \(>= 2\)"),
    ({"genome.stages.1.depth": {"low": 3, "high": 1}}, r"genome\.stages\[1\]\.depth: range .* is not allowed"),
    ({"genome.stages.0.stride": [1, 3]}, r"stride: 3 is not allowed \(one of 1, 2\)"),
    ({"genome.stages.0.colour": 1}, r"genome\.stages\[0\]\.colour: unknown key"),
    ({"genome.block": ["basic", "dense"]}, r"genome\.block: 'dense' is not allowed"),
    ({"genome.stages.0.channels": []}, r"empty choice list"),
    ({"genome.stem": None}, r"genome\.stem: missing required key"),
    ({"objectives": {"val_acc": "minimize"}}, r"objectives\.val_acc: 'minimize' is not allowed \(maximize\)"),
    ({"objectives": {"accuracy": "maximize"}}, r"objectives\.accuracy: unknown key"),
    ({"constraints": {"max_flops": 5}}, r"constraints\.max_flops: unknown key \(allowed: max_latency_ms, max_macs, max_params\)"),
    ({"constraints": {"max_macs": -1}}, r"constraints\.max_macs: -1 is not allowed"),
    ({"proxy": {"epochs": 0}}, r"proxy\.epochs: 0 is not allowed"),
    ({"proxy": {"zero_init_residual": "no"}},
     r"proxy\.zero_init_residual: 'no' is not allowed \(true or false\)"),
    ({"genome.num_stages": 3}, r"genome\.stages: 2 stage specs for up to 3 stages"),
    ({"task.resolution": 4}, r"task\.resolution: 4 is not allowed"),
    ({"genome.stem.kernel": [3, 4]}, r"genome\.stem\.kernel: 4 is not allowed \(an odd integer"),
    ({"genome.stages.0.aggregation": ["tree", "dag"]},
     r"genome\.stages\[0\]\.aggregation: 'dag' is not allowed \(one of tree, none\)"),
    ({"genome.stages.1.downsample": "avg"}, r"genome\.stages\[1\]\.downsample: 'avg' is not allowed"),
    ({"genome.stem.levels": [{"channels": 8, "convs": [0, 1]}]},
     r"genome\.stem\.channels: required when every stem level may be left out"),
    ({"baselines": ["resnet99"]}, r"baselines: zoo: 'resnet99'.*6n\+2"),
    # the name names the run folder results/<name>: no path out of it
    ({"name": "../../evil"}, r"name: '../../evil' is not allowed \(letters, digits, _ . -"),
    ({"name": ""}, r"name: '' is not allowed"),
    ({"baselines": ["vgg16"]}, r"baselines: 'vgg16' is not a zoo name \(allowed: dla34,"),
    ({"baselines": "resnet8"}, r"baselines: 'resnet8' is not allowed \(a list of zoo names\)"),
    ({"baselines": ["plain_cnn"]},
     r"baselines: plain_cnn is not in this space \(stages\[0\]\.channels 32 is not among \[8, 16\]\)"),
    ({"baselines": ["plain_cnn_8_16_32"], "genome.stem": {"channels": 8, "pool": True},
      "genome.stages": [{"channels": 16, "aggregation": "none", "downsample": "pool_last"},
                        {"channels": 32, "aggregation": "none", "downsample": "pool_last"}]},
     r"baselines: plain_cnn_8_16_32 is not in this space \(block 'plain', the space gives 'basic'\)"),
])
def test_bad_spaces_name_the_key_and_what_is_allowed(over, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(minimal(**over))


def test_bad_space_file_errors_name_the_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(minimal(**{"genome.stages.0.fan_in": 1})))
    with pytest.raises(SpaceError, match=r"space\.yaml: genome\.stages\[0\]\.fan_in"):
        SearchSpace.from_yaml(path)
    path.write_text("task: [unclosed")
    with pytest.raises(SpaceError, match=r"space\.yaml: not valid YAML"):
        SearchSpace.from_yaml(path)
    with pytest.raises(SpaceError, match=r"cannot read"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_listed_baseline_is_reachable_by_sample(path):
    space = SearchSpace.from_yaml(path)
    for name in space.baselines:
        values = space.find(space.hand_design(name))
        genome, repairs = space.sample(FixedSuggester(values), space.task.sizing_resolution)
        assert repairs == [] and genome.canonical_hash() == \
            space.hand_design(name).canonical_hash()


def test_the_small_spaces_contain_the_plain_cnns_and_resnets():
    by_name = {p.stem: SearchSpace.from_yaml(p) for p in SPACES}
    assert {"plain_cnn", "plain_cnn_8_16_32", "resnet8", "resnet14"} <= set(
        by_name["digits-tiny"].baselines)
    assert {"plain_cnn", "plain_cnn_32_64_128", "resnet8"} <= set(
        by_name["small-images"].baselines)
    assert by_name["cifar10-dla34-neighbourhood"].baselines == ("dla34_cifar",)


def test_find_matches_the_aggregation_default_and_repaired_widths():
    from dla_nas import Genome

    raw = minimal(**{"genome.block": "bottleneckx",
                     "genome.stages": [{"channels": [8, 16], "aggregation": "none",
                                        "level_root": [None, True], "stride": 1},
                                       {"channels": [20, 40], "depth": [1, 2]}]})
    space = SearchSpace.from_dict(raw)
    chain = {"block": "bottleneckx", "stem": {"levels": [{"channels": 8}], "kernel": 3},
             "stages": [{"channels": 32, "aggregation": "none", "stride": 1},
                        {"channels": 64, "depth": 2}]}
    values = space.find(Genome.from_dict(chain))  # 8 -> 32 and 40 -> 64 by the width repair
    assert values["stages[0].level_root"] is None and values["stages[1].channels"] == 40


def test_a_chain_draws_only_the_fields_it_uses():
    raw = minimal(**{"genome.stages.1.aggregation": ["none", "tree"],
                     "genome.stages.1.blocks": [1, 3], "genome.stages.1.root_kernel": [1, 3],
                     "genome.stages.1.downsample": ["strided", "pool_last"]})
    space = SearchSpace.from_dict(raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        genome, _ = space.sample(trial, 16)
        stage = genome.stages[1]
        seen.add(stage.aggregation)
        names = set(trial.params)
        if stage.aggregation == "none":
            assert "stages[1].blocks" in names and "stages[1].depth" not in names
            assert "stages[1].root_kernel" not in names and not stage.level_root
        else:
            assert "stages[1].depth" in names and "stages[1].blocks" not in names
        study.tell(trial, 0.0)
    assert seen == {"none", "tree"}


def test_dla34_neighbourhood_contains_dla34_cifar():
    from dla_nas.arch import zoo

    space = SearchSpace.from_yaml(Path(SPACES[0]).parent / "cifar10-dla34-neighbourhood.yaml")
    first = {n: s.values()[0] for n, s in space._named_specs()}
    genome, repairs = space.sample(FixedSuggester(first), 32)
    assert repairs == []
    assert genome.canonical_hash() == zoo.load("dla34_cifar").canonical_hash()


def test_the_draw_order_is_pinned_so_the_committed_seeded_searches_replay():
    """The committed reference runs were drawn in this order (the stem's kernel last, a
    tree's fields in the stage's order): with another, their seeded searches would draw
    other genomes."""
    class Names:
        def __init__(self):
            self.drawn = []

        def suggest_categorical(self, name, choices):
            self.drawn.append(name)
            return choices[-1]

        def suggest_int(self, name, low, high, step=1):
            self.drawn.append(name)
            return high

        def suggest_float(self, name, low, high, *, log=False):
            self.drawn.append(name)
            return high

    space = SearchSpace.from_yaml(Path(__file__).parents[1] / "search_spaces" / "digits-tiny.yaml")
    names = Names()
    space.sample(names, 16)
    stage = ["channels", "aggregation", "depth", "fan_in"]
    assert names.drawn == [
        "block", "stem.channels", "stem.pool", "stem.levels[0].channels",
        "stem.levels[0].convs", "stem.levels[0].stride", "num_stages",
        *[f"stages[0].{k}" for k in [*stage, "stride", "level_root", "root_residual",
                                     "downsample"]],
        *[f"stages[1].{k}" for k in [*stage, "level_root", "root_kernel", "root_residual",
                                     "downsample"]],
        *[f"stages[2].{k}" for k in [*stage[:3], "level_root", "ida_from.0", "downsample"]],
        "stem.kernel"]
