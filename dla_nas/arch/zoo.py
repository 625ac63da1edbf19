"""The official DLA family as genomes, plus CIFAR-style versions for 32 px inputs.

The ten official variants are YAML files in ``dla_nas/arch/zoo_configs``. Each ``<name>_cifar``
is derived from its official genome by ``cifar_variant``: a 3x3 base conv and no stride in
the second stem level or the first stage, so a 32 px input ends at 4x4 instead of 1x1
(total stride 8, as CIFAR ResNets do).
"""

from __future__ import annotations

import dataclasses
from importlib import resources

from ..errors import GenomeError
from .genome import Genome

CIFAR_SUFFIX = "_cifar"


def official_names() -> list[str]:
    """The ten official variants, in the order of the DLA paper's table."""
    files = resources.files(__package__).joinpath("zoo_configs")
    found = {p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml")}
    order = ["dla34", "dla46_c", "dla46x_c", "dla60x_c", "dla60", "dla60x", "dla102", "dla102x",
             "dla102x2", "dla169"]
    return [n for n in order if n in found] + sorted(found - set(order))


def names() -> list[str]:
    """Every zoo name: the official variants, then their CIFAR-style versions."""
    official = official_names()
    return official + [n + CIFAR_SUFFIX for n in official]


def cifar_variant(genome: Genome) -> Genome:
    """The same network with a 3x3 base conv and two fewer stride-2 steps (stride 8 overall)."""
    stem = genome.stem
    levels = tuple(dataclasses.replace(lv, stride=1) for lv in stem.levels)
    stages = (dataclasses.replace(genome.stages[0], stride=1), *genome.stages[1:])
    return dataclasses.replace(
        genome,
        stem=dataclasses.replace(stem, kernel=3, stride=1, levels=levels),
        stages=stages,
        name=genome.name + CIFAR_SUFFIX,
    )


def load(name: str) -> Genome:
    """The genome of a zoo variant, e.g. ``load("dla34")`` or ``load("dla34_cifar")``."""
    if name not in names():
        raise GenomeError(f"zoo: {name!r} is not known (allowed: {', '.join(names())})")
    base = name.removesuffix(CIFAR_SUFFIX)
    path = resources.files(__package__).joinpath("zoo_configs", base + ".yaml")
    genome = Genome.from_yaml(str(path))
    return cifar_variant(genome) if name.endswith(CIFAR_SUFFIX) else genome
