"""Hand-designed reference networks that a search is compared against, each trained by the
same recipe as the searched ones.

- ``plain_cnn``: the plain network of the anchors: per width, 3x3 conv + BN + ReLU + 2x2
  max-pool; then global average pooling and a linear classifier. ``plain_cnn`` is widths
  16-32-64 (about 24k params); ``plain_cnn_8_16_32`` and other ``plain_cnn_<w1>_<w2>...`` names
  give other widths.
- ``resnet8``, ``resnet14``, ``resnet20`` (any ``resnet<6n+2>``): CIFAR-style ResNets, a 3x3
  stem and three stages of n basic blocks at 16-32-64 channels, strides 1-2-2.
- zoo names (``dla46_c_cifar``...), and narrowed zoo networks ``<zoo>_x<m>`` whose every width
  is scaled by ``m`` (``dla34_cifar_x0.25``: a quarter of the channels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import torch
from torch import nn

from ..errors import GenomeError
from . import zoo
from .blocks import BasicBlock, conv_bn
from .builder import build_model, zero_init_residual_branches
from .genome import Genome

_PLAIN = re.compile(r"plain_cnn((?:_\d+)+)?")
_RESNET = re.compile(r"resnet(\d+)")
_NARROW = re.compile(r"(.+)_x(\d*\.?\d+)")
# the hand-designed line that `confirm --baselines line` trains
LINE = ("plain_cnn_8_16_32", "plain_cnn", "plain_cnn_32_64_128", "resnet8", "resnet14",
        "resnet20", "dla34_cifar_x0.25", "dla46_c_cifar")
KNOWN = ("plain_cnn, plain_cnn_<w1>_<w2>..., resnet<6n+2> (resnet8, resnet14, resnet20), "
          "a zoo name such as dla46_c_cifar, or <zoo>_x<m> such as dla34_cifar_x0.25")


class PlainCNN(nn.Module):
    """conv3x3-BN-ReLU-maxpool per width, global average pool, linear."""

    def __init__(self, widths: tuple[int, ...], num_classes: int, in_chans: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class _ResBlock(nn.Module):
    """A basic block with a 1x1 projection on the shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.block = BasicBlock(c_in, c_out, stride)
        self.shortcut = (nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet: 3x3 stem, three stages of ``n`` basic blocks, pool, linear."""

    def __init__(self, n: int, num_classes: int, in_chans: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [*conv_bn(in_chans, widths[0], 3), nn.ReLU(inplace=True)]
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(n):
                layers.append(_ResBlock(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _narrowed(genome: Genome, mult: float, name: str) -> Genome:
    def width(c: int) -> int:
        return max(4, round(c * mult / 4) * 4)

    stem = dataclasses.replace(genome.stem, levels=tuple(
        dataclasses.replace(lv, channels=width(lv.channels)) for lv in genome.stem.levels))
    stages = tuple(dataclasses.replace(st, channels=width(st.channels)) for st in genome.stages)
    return dataclasses.replace(genome, stem=stem, stages=stages, name=name).validate()


def is_baseline(name: str) -> bool:
    try:
        return (bool(_PLAIN.fullmatch(name)) or _resnet_blocks(name) is not None
                or baseline_genome(name) is not None)
    except GenomeError:
        return False


def _resnet_blocks(name: str) -> int | None:
    """Blocks per stage of ``resnet<6n+2>``; None for another name."""
    m = _RESNET.fullmatch(name)
    depth = int(m.group(1)) if m else 0
    return (depth - 2) // 6 if depth >= 8 and (depth - 2) % 6 == 0 else None


def baseline_genome(name: str) -> Genome | None:
    """The genome of a zoo or narrowed-zoo baseline; None for a plain CNN or a ResNet."""
    if name in zoo.names():
        return zoo.load(name)
    m = _NARROW.fullmatch(name)
    if m and m.group(1) in zoo.names():
        mult = float(m.group(2))
        if not 0 < mult <= 1:
            raise GenomeError(f"baselines: {name!r}: the width multiplier must be in (0, 1]")
        return _narrowed(zoo.load(m.group(1)), mult, name)
    return None


def baseline_hash(name: str) -> str:
    """The canonical hash for a zoo baseline; a name-derived id for the others."""
    genome = baseline_genome(name)
    if genome is not None:
        return genome.canonical_hash()
    return "plain-" + hashlib.sha256(name.encode()).hexdigest()[:6]


def build_candidate(spec: str | Genome, num_classes: int, in_chans: int,
                    zero_init_residual: bool = False) -> nn.Module:
    """A baseline by name (plain CNN, ResNet, zoo, narrowed zoo), else a DLA from a genome
    or a genome/exported YAML path."""
    if isinstance(spec, str) and is_baseline(spec):
        return build_baseline(spec, num_classes, in_chans, zero_init_residual)
    return build_model(spec, num_classes, in_chans, zero_init_residual=zero_init_residual)


def build_baseline(name: str, num_classes: int, in_chans: int,
                   zero_init_residual: bool = False) -> nn.Module:
    """Build a baseline by name (see the module docstring). ``zero_init_residual`` starts
    every residual branch at zero (a plain CNN has none)."""
    m = _PLAIN.fullmatch(name)
    if m:
        widths = tuple(int(w) for w in m.group(1)[1:].split("_")) if m.group(1) else (16, 32, 64)
        if min(widths) < 1:
            raise GenomeError(f"baselines: {name!r} has a width below 1")
        return PlainCNN(widths, num_classes, in_chans)
    blocks = _resnet_blocks(name)
    if blocks is not None:
        model = CifarResNet(blocks, num_classes, in_chans)
        if zero_init_residual:
            zero_init_residual_branches(model)
        return model
    genome = baseline_genome(name)
    if genome is not None:
        return build_model(genome, num_classes, in_chans, zero_init_residual=zero_init_residual)
    raise GenomeError(f"baselines: {name!r} is not known (allowed: {KNOWN})")
