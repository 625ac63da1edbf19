"""U-Net (Ronneberger et al., 2015), the hand design that dense networks are held against.

``unet`` is the standard network: widths 64-128-256-512-1024, each level two 3x3 conv + BN +
ReLU, 2x2 max-pooling down, 2x2 transposed convs up, the skip concatenated, a 1x1 conv to
the classes (about 31M params; the BN variant most implementations train).
``unet_<w1>_<w2>...`` is the same with other widths (narrowed, or fewer levels). Odd sides
are fitted back to the skip's size after each upsampling, so any input size works.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import GenomeError
from .blocks import fit_to, max_pool

UNET_WIDTHS = (64, 128, 256, 512, 1024)
_UNET = re.compile(r"unet((?:_\d+)+)?")
UNET_PATTERN = "unet, unet_<w1>_<w2>... (dense)"


def unet_widths(name: str) -> tuple[int, ...] | None:
    """The widths a U-Net name gives (``unet``: the standard ones); None for another name.
    A ``GenomeError`` for a U-Net name with fewer than two widths or a zero width."""
    found = _UNET.fullmatch(name)
    if found is None:
        return None
    widths = tuple(int(w) for w in found.group(1)[1:].split("_")) if found.group(1) \
        else UNET_WIDTHS
    if len(widths) < 2 or min(widths) < 1:
        raise GenomeError(f"backbone: {name!r} is not allowed (a U-Net needs two or more "
                          "widths >= 1: unet_<w1>_<w2>...)")
    return widths


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU: a U-Net level."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """The U-Net of ``widths`` for ``in_chans`` inputs; ``forward`` gives logits
    (N, num_classes, H, W) at the input's size. ``outc`` is the classifier."""

    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...] = UNET_WIDTHS
                 ) -> None:
        super().__init__()
        self.inc = double_conv(in_chans, widths[0])
        self.down = nn.ModuleList(double_conv(a, b) for a, b in zip(widths, widths[1:]))
        deep_first = widths[::-1]
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 2, stride=2)
                                for a, b in zip(deep_first, deep_first[1:]))
        self.merge = nn.ModuleList(double_conv(2 * b, b) for b in deep_first[1:])
        self.outc = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(max_pool(skips[-1], 2)))
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            skip = skips.pop()
            y = merge(torch.cat([skip, fit_to(up(y), skip)], 1))
        return self.outc(y)
