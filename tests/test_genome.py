"""Genome: round trips, canonical hash, and errors that name the field."""

import dataclasses

import pytest

from dla_nas import Genome, GenomeError
from dla_nas.arch import zoo
from dla_nas.arch.genome import Stage


def small_dict():
    return {
        "block": "basic",
        "stem": {"kernel": 3, "levels": [{"channels": 8, "convs": 1, "stride": 1}]},
        "stages": [
            {"channels": 16, "depth": 1, "stride": 2, "level_root": False},
            {"channels": 24, "depth": 2, "fan_in": 3},
            {"channels": 32, "depth": 1, "ida_from": [0]},
        ],
    }


@pytest.mark.parametrize("name", ["dla34", "dla60x_c", "dla102x2", "dla34_cifar"])
def test_yaml_and_dict_round_trip(name, tmp_path):
    genome = zoo.load(name)
    assert Genome.from_dict(genome.to_dict()) == genome
    path = tmp_path / "g.yaml"
    genome.to_yaml(path)
    assert Genome.from_yaml(path) == genome
    assert Genome.from_yaml(path).canonical_hash() == genome.canonical_hash()


def test_defaults_fill_in_and_survive_a_round_trip():
    genome = Genome.from_dict(small_dict())
    assert genome.stages[1].fan_in == 3 and genome.stages[0].fan_in == 2
    assert Genome.from_dict(genome.to_dict()) == genome


def test_exported_config_with_a_genome_key_loads(tmp_path):
    path = tmp_path / "exported.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"genome": small_dict(), "metadata": {"trial": 3}}))
    assert Genome.from_yaml(path) == Genome.from_dict(small_dict())


def test_hash_ignores_what_does_not_change_the_network():
    base = Genome.from_dict(small_dict())
    same = [
        dataclasses.replace(base, name="renamed"),
        dataclasses.replace(base, cardinality=64),  # irrelevant for a basic block
    ]
    d = small_dict()
    d["stages"][2]["ida_from"] = [0, 0]
    same.append(Genome.from_dict(d))
    for g in same:
        assert g.canonical_hash() == base.canonical_hash()
    assert len(base.canonical_hash()) == 12


def test_hash_orders_ida_edges():
    d = small_dict()
    d["stages"].append({"channels": 40, "ida_from": [1, 0]})
    a = Genome.from_dict(d)
    d["stages"][3]["ida_from"] = [0, 1]
    assert Genome.from_dict(d).canonical_hash() == a.canonical_hash()


@pytest.mark.parametrize(
    "path, value",
    [
        (("block",), "bottleneck"),
        (("stem", "kernel"), 5),
        (("stem", "stride"), 2),
        (("stem", "levels", 0, "channels"), 12),
        (("stem", "levels", 0, "convs"), 2),
        (("stem", "levels", 0, "stride"), 2),
        (("stages", 0, "channels"), 18),
        (("stages", 0, "depth"), 2),
        (("stages", 0, "fan_in"), 3),
        (("stages", 0, "stride"), 1),
        (("stages", 0, "level_root"), True),
        (("stages", 1, "root_kernel"), 3),
        (("stages", 1, "root_residual"), True),
        (("stages", 2, "ida_from"), []),
    ],
)
def test_hash_changes_with_any_real_change(path, value):
    base = Genome.from_dict(small_dict())
    d = small_dict()
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert Genome.from_dict(d).canonical_hash() != base.canonical_hash()


def test_cardinality_matters_for_bottleneckx():
    g = zoo.load("dla102x")
    assert dataclasses.replace(g, cardinality=64).canonical_hash() != g.canonical_hash()


def _broken(mutate):
    d = small_dict()
    mutate(d)
    return d


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["stages"][1].pop("channels"), r"stages\[1\]\.channels: missing required field"),
        (lambda d: d.pop("stem"), r"^stem: missing required field"),
        (lambda d: d["stages"][0].update(depth="2"), r"stages\[0\]\.depth: '2' is not allowed \(an integer >= 1\)"),
        (lambda d: d["stages"][0].update(level_root=1), r"stages\[0\]\.level_root: 1 is not allowed \(true or false\)"),
        (lambda d: d.update(stages={"a": 1}), r"stages: expected a list"),
        (lambda d: d["stages"][2].update(fan_in=1), r"stages\[2\]\.fan_in: 1 is not allowed \(>= 2\)"),
        (lambda d: d["stages"][0].update(stride=3), r"stages\[0\]\.stride: 3 is not allowed \(one of 1, 2\)"),
        (lambda d: d["stages"][1].update(root_kernel=2), r"root_kernel: 2 is not allowed \(one of 1, 3\)"),
        (lambda d: d.update(block="dense"), r"block: 'dense' is not allowed \(one of basic, bottleneck, bottleneckx, plain\)"),
        (lambda d: d["stem"].update(kernel=4), r"stem\.kernel: 4 is not allowed \(an odd integer >= 1\)"),
        (lambda d: d["stages"][0].update(width=3), r"stages\[0\]\.width: unknown field \(allowed: channels, depth"),
        (lambda d: d["stages"][2].update(ida_from=[3]), r"stages\[2\]\.ida_from: 3 is not allowed \(earlier stages 0\.\.0"),
        (lambda d: d["stages"][2].update(ida_from=[1]), r"stages\[2\]\.ida_from: 1 is not allowed .*level_root"),
        (lambda d: d["stages"][1].update(ida_from=[0]), r"stages\[1\]\.ida_from: 0 is not allowed \(earlier stages none"),
        (lambda d: d.update(block="bottleneckx", cardinality=32), r"stages\[0\]\.channels: 16 is not allowed with bottleneckx"),
        (lambda d: d["stem"].update(levels=[]), r"stem\.channels: required when stem\.levels is empty"),
        (lambda d: d["stem"].update(pool="yes"), r"stem\.pool: 'yes' is not allowed \(true or false\)"),
        (lambda d: d["stages"][1].update(aggregation="dense"), r"stages\[1\]\.aggregation: 'dense' is not allowed \(one of tree, none\)"),
        (lambda d: d["stages"][1].update(downsample="avg"), r"stages\[1\]\.downsample: 'avg' is not allowed \(one of strided, pool_first, pool_last\)"),
        (lambda d: d["stages"][1].update(blocks=3), r"stages\[1\]\.blocks: 3 is not allowed with aggregation tree .*fan_in \*\* depth"),
        (lambda d: d["stages"][1].update(aggregation="none", depth=2), r"stages\[1\]\.depth: 2 is not allowed with aggregation none"),
        (lambda d: d["stages"][0].update(aggregation="none", root_kernel=3), r"stages\[0\]\.root_kernel: 3 is not allowed with aggregation none .*no root"),
        (lambda d: d["stages"][0].update(stride=1, downsample="pool_first"), r"stages\[0\]\.downsample: 'pool_first' is not allowed .*stride-1"),
    ],
)
def test_invalid_genomes_name_the_field_and_what_is_allowed(mutate, message):
    with pytest.raises(GenomeError, match=message) as info:
        Genome.from_dict(_broken(mutate))
    assert len(info.value.args) == 1 and "\n" not in str(info.value)  # one plain line


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stem: {kernel: 3}\nstages: []\n")
    with pytest.raises(GenomeError, match=r"bad\.yaml: stem\.channels: required when stem\.levels is empty"):
        Genome.from_yaml(path)
    path.write_text("stem: [unclosed\n")
    with pytest.raises(GenomeError, match=r"bad\.yaml: not valid YAML"):
        Genome.from_yaml(path)
    with pytest.raises(GenomeError, match="cannot read"):
        Genome.from_yaml(tmp_path / "missing.yaml")


def test_strides_too_many_for_the_input():
    genome = zoo.load("dla34")  # total stride 32
    assert genome.min_input_size() == 17
    assert genome.feature_sizes(17)[-1] == 1
    with pytest.raises(GenomeError, match=r"input size 16 px is too small.*stages\[3\].*at least 17 px"):
        genome.feature_sizes(16)
    with pytest.raises(GenomeError, match=r"input size 7 px is not allowed \(>= 8\)"):
        Genome.from_dict(small_dict()).feature_sizes(7)


def test_feature_sizes_follow_the_strides():
    genome = Genome.from_dict(small_dict())
    assert genome.total_stride == 8
    assert genome.feature_sizes(32) == [32, 16, 8, 4]
    assert genome.feature_sizes(9) == [9, 5, 3, 2]
    assert isinstance(genome.stages[0], Stage)
