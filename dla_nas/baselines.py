"""Reference networks a search is compared against: zoo genomes and a plain CNN.

``plain_cnn`` is the plain network of the digits anchors: per width, 3x3 conv + BN + ReLU +
2x2 max-pool; then global average pooling and a linear classifier. ``plain_cnn`` is widths
16-32-64 (about 24k params); ``plain_cnn_8_16_32`` and other ``plain_cnn_<w1>_<w2>...`` names
give other widths.
"""

from __future__ import annotations

import hashlib
import re

from torch import nn

from . import zoo
from .builder import build_model
from .genome import Genome, GenomeError

_PLAIN = re.compile(r"plain_cnn((?:_\d+)+)?")


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


def is_baseline(name: str) -> bool:
    return bool(_PLAIN.fullmatch(name)) or name in zoo.names()


def baseline_names() -> list[str]:
    return ["plain_cnn", "plain_cnn_8_16_32", *zoo.names()]


def baseline_genome(name: str) -> Genome | None:
    """The genome of a zoo baseline; None for a plain CNN."""
    return zoo.load(name) if name in zoo.names() else None


def baseline_hash(name: str) -> str:
    """The canonical hash for a zoo baseline; a name-derived id for a plain CNN."""
    genome = baseline_genome(name)
    if genome is not None:
        return genome.canonical_hash()
    return "plain-" + hashlib.sha256(name.encode()).hexdigest()[:6]


def build_baseline(name: str, num_classes: int, in_chans: int,
                   zero_init_residual: bool = False) -> nn.Module:
    """Build a baseline by name: a zoo name, ``plain_cnn`` or ``plain_cnn_<w>_<w>...``
    (``zero_init_residual`` applies to zoo networks; a plain CNN has no residual branch)."""
    m = _PLAIN.fullmatch(name)
    if m:
        widths = tuple(int(w) for w in m.group(1)[1:].split("_")) if m.group(1) else (16, 32, 64)
        if min(widths) < 1:
            raise GenomeError(f"baselines: {name!r} has a width below 1")
        return PlainCNN(widths, num_classes, in_chans)
    if name in zoo.names():
        return build_model(name, num_classes, in_chans, zero_init_residual=zero_init_residual)
    raise GenomeError(f"baselines: {name!r} is not known (allowed: plain_cnn, "
                      f"plain_cnn_<w1>_<w2>..., or a zoo name: {', '.join(zoo.names())})")
