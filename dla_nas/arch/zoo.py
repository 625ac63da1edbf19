"""Named networks as genomes: the official DLA family, CIFAR-style versions of it for 32 px
inputs, and the hand designs that a search is compared against.

- The ten official variants are YAML files in ``dla_nas/arch/zoo_configs``. Each
  ``<name>_cifar`` is derived from its official genome by ``cifar_variant``: a 3x3 base conv
  and no stride in the second stem level or the first stage, so a 32 px input ends at 4x4
  instead of 1x1 (total stride 8, as CIFAR ResNets do).
- ``plain_cnn_<w1>_<w2>...``: per width, 3x3 conv + BN + ReLU + 2x2 max-pool, then global
  average pooling and a linear classifier; ``plain_cnn`` is widths 16-32-64 (about 24k
  params). The base conv is the first width; each further width is a one-block chain of
  plain blocks, max-pooled after it.
- ``resnet<6n+2>`` (``resnet8``, ``resnet14``, ``resnet20``): He et al.'s CIFAR ResNets, a 3x3
  stem and three chains of n basic blocks at 16-32-64 channels, strides 1-2-2, with 1x1
  projection shortcuts where the shape changes.
- ``<name>_x<m>``: any of these with every width scaled by ``m`` in (0, 1]
  (``dla34_cifar_x0.25``: a quarter of the channels, rounded to multiples of 4).
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

from ..errors import GenomeError
from .genome import Genome, Stage, Stem

CIFAR_SUFFIX = "_cifar"
HAND_DESIGNS = ("plain_cnn_8_16_32", "plain_cnn", "plain_cnn_32_64_128", "resnet8", "resnet14",
                "resnet20")
_PLAIN = re.compile(r"plain_cnn((?:_\d+)+)?")
_RESNET = re.compile(r"resnet(\d+)")
_NARROW = re.compile(r"(.+)_x(\d*\.?\d+)")
PATTERNS = "plain_cnn_<w1>_<w2>..., resnet<6n+2>, <name>_x<m>"


def official_names() -> list[str]:
    """The ten official variants, in the order of the DLA paper's table."""
    files = resources.files(__package__).joinpath("zoo_configs")
    found = {p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml")}
    order = ["dla34", "dla46_c", "dla46x_c", "dla60x_c", "dla60", "dla60x", "dla102", "dla102x",
             "dla102x2", "dla169"]
    return [n for n in order if n in found] + sorted(found - set(order))


def dla_names() -> list[str]:
    """The official variants, then their CIFAR-style versions."""
    official = official_names()
    return official + [n + CIFAR_SUFFIX for n in official]


def names() -> list[str]:
    """Every listed zoo name: the DLAs, then the hand designs (other ``plain_cnn_<widths>``
    and ``resnet<6n+2>`` load too)."""
    return dla_names() + list(HAND_DESIGNS)


def plain_cnn(widths: tuple[int, ...], name: str = "") -> Genome:
    """The plain CNN of ``widths`` (at least two) as a genome."""
    stages = tuple(Stage(w, aggregation="none", downsample="pool_last") for w in widths[1:])
    stem = Stem(kernel=3, stride=1, channels=widths[0], pool=True)
    return Genome(stem=stem, stages=stages, block="plain", name=name).validate()


def cifar_resnet(blocks: int, name: str = "", widths: tuple[int, ...] = (16, 32, 64)) -> Genome:
    """The CIFAR ResNet with ``blocks`` basic blocks per stage as a genome."""
    stages = tuple(Stage(w, aggregation="none", blocks=blocks, stride=1 if i == 0 else 2)
                   for i, w in enumerate(widths))
    stem = Stem(kernel=3, stride=1, channels=widths[0])
    return Genome(stem=stem, stages=stages, block="basic", name=name).validate()


def find(name: str) -> Genome | None:
    """The genome of a zoo name, or None for a name the zoo does not know."""
    if name in dla_names():
        base = name.removesuffix(CIFAR_SUFFIX)
        path = resources.files(__package__).joinpath("zoo_configs", base + ".yaml")
        genome = Genome.from_yaml(str(path))
        return cifar_variant(genome) if name.endswith(CIFAR_SUFFIX) else genome
    m = _PLAIN.fullmatch(name)
    if m:
        widths = tuple(int(w) for w in m.group(1)[1:].split("_")) if m.group(1) else (16, 32, 64)
        if len(widths) < 2 or min(widths) < 1:
            raise GenomeError(f"zoo: {name!r}: a plain CNN needs at least two widths >= 1")
        return plain_cnn(widths, name)
    m = _RESNET.fullmatch(name)
    if m:
        depth = int(m.group(1))
        if depth < 8 or (depth - 2) % 6:
            raise GenomeError(f"zoo: {name!r}: a CIFAR ResNet has depth 6n+2 >= 8 (resnet8, "
                              "resnet14, resnet20, ...)")
        return cifar_resnet((depth - 2) // 6, name)
    m = _NARROW.fullmatch(name)
    base = find(m.group(1)) if m else None
    if base is None:
        return None
    mult = float(m.group(2))
    if not 0 < mult <= 1:
        raise GenomeError(f"zoo: {name!r}: the width multiplier must be in (0, 1]")
    return narrowed(base, mult, name)


def narrowed(genome: Genome, mult: float, name: str = "") -> Genome:
    """``genome`` with every width scaled by ``mult``, rounded to a multiple of 4 (>= 4)."""
    def width(c: int) -> int:
        return max(4, round(c * mult / 4) * 4)

    stem = dataclasses.replace(
        genome.stem, channels=None if genome.stem.channels is None else width(genome.stem.channels),
        levels=tuple(dataclasses.replace(lv, channels=width(lv.channels))
                     for lv in genome.stem.levels))
    stages = tuple(dataclasses.replace(st, channels=width(st.channels)) for st in genome.stages)
    return dataclasses.replace(genome, stem=stem, stages=stages, name=name).validate()


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
    """The genome of a zoo name, e.g. ``load("dla34")``, ``load("dla34_cifar")`` or
    ``load("resnet20")``."""
    genome = find(name)
    if genome is None:
        raise GenomeError(f"zoo: {name!r} is not known (allowed: {', '.join(names())}, "
                          f"{PATTERNS})")
    return genome
