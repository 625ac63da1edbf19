"""Genome -> PyTorch ``nn.Module``.

``build_model`` takes a ``Genome``, a path to a genome or exported-model YAML, or a zoo name.
With fan-in 2 the result is the official DLA network, parameter for parameter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenomeError
from .backbone_genome import AnyGenome, BackboneGenome, genome_from_yaml
from .blocks import BasicBlock, Bottleneck, Chain, Root, StageOptions, Tree, conv_bn, max_pool
from .genome import INITS, MAX_IN_CHANS, Genome

if TYPE_CHECKING:
    from ..weights.sources import WeightsFile


def conv_level(c_in: int, c_out: int, convs: int, stride: int) -> nn.Sequential:
    """``convs`` x (3x3 conv + BN + ReLU), the first with ``stride`` (official level0/level1)."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [*conv_bn(c_in if i == 0 else c_out, c_out, 3, stride if i == 0 else 1),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DLA(nn.Module):
    """A DLA classifier built from a genome.

    ``forward_features`` returns every level's output (stem levels, then stages), for dense
    prediction; ``feature_info`` describes them (channels, reduction, module name)."""

    def __init__(self, genome: Genome, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        genome.validate()
        self.genome = genome
        self.num_classes = num_classes
        stem = genome.stem
        c = stem.width
        self.base_layer = nn.Sequential(*conv_bn(in_chans, c, stem.kernel, stem.stride),
                                        nn.ReLU(inplace=True))
        names = genome.level_names()
        channels, reduction = [], genome.stem_stride
        for name, lv in zip(names, stem.levels):
            self.add_module(name, conv_level(c, lv.channels, lv.convs, lv.stride))
            c = lv.channels
            reduction *= lv.stride
            channels.append((c, reduction))
        n_stem = len(stem.levels)
        # per stage: (max-pool before, max-pool after, the blocks' stride)
        self.stage_pools: list[tuple[bool, bool, int]] = []
        for i, st in enumerate(genome.stages):
            pooled = st.stride == 2 and st.downsample != "strided"
            stride = 1 if pooled else st.stride
            self.stage_pools.append((pooled and st.downsample == "pool_first",
                                     pooled and st.downsample == "pool_last", stride))
            opts = StageOptions(genome.block, genome.cardinality, stride, st.level_root,
                                st.root_kernel, st.root_residual,
                                sum(genome.stages[j].channels for j in st.ida_from))
            body = (Tree(st.depth, st.fan_in, c, st.channels, opts) if st.is_tree
                    else Chain(st.blocks, c, st.channels, opts))
            self.add_module(names[n_stem + i], body)
            c = st.channels
            reduction *= st.stride
            channels.append((c, reduction))
        self.level_names = names
        self.ida_sources = [[n_stem + j for j in st.ida_from] for st in genome.stages]
        self.feature_info = [dict(num_chs=ch, reduction=r, module=n)
                             for n, (ch, r) in zip(names, channels)]
        self.num_features = c
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(c, num_classes, 1, bias=True)
        self.min_input_size = genome.min_input_size()
        self.transfer_report = None  # what pretrained weights were loaded (build_model)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each level, shallow to deep."""
        if not torch.jit.is_tracing() and min(x.shape[-2:]) < self.min_input_size:
            self.genome.feature_sizes(min(x.shape[-2:]))  # raises a GenomeError that says why
        x = self.base_layer(x)
        if self.genome.stem.pool:
            x = max_pool(x, 2)
        n_stem = len(self.genome.stem.levels)
        feats: list[torch.Tensor] = []
        for name in self.level_names[:n_stem]:
            x = getattr(self, name)(x)
            feats.append(x)
        for i, name in enumerate(self.level_names[n_stem:]):
            pool_first, pool_last, stride = self.stage_pools[i]
            if pool_first:
                x = max_pool(x, 2)
            size = (math.ceil(x.shape[-2] / stride), math.ceil(x.shape[-1] / stride))
            extra = [_adaptive_max_pool(feats[j], size) for j in self.ida_sources[i]]
            x = getattr(self, name)(x, extra)
            if pool_last:
                x = max_pool(x, 2)
            feats.append(x)
        return feats

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])


def _adaptive_max_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_max_pool2d``; while exporting to ONNX, which takes it only when each
    output side divides the input's, the same windows as slices (``window_max_pool``)."""
    if torch.onnx.is_in_onnx_export() and any(n % m for n, m in zip(x.shape[-2:], size)):
        return window_max_pool(x, size)
    return F.adaptive_max_pool2d(x, size)


def window_max_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive max-pooling written out: output cell i of a side of n takes the max over
    inputs floor(i*n/m) to ceil((i+1)*n/m) - 1, as ``adaptive_max_pool2d`` does; a window is
    a rectangle, so the rows are pooled first, then the columns."""
    for axis, m in ((-2, size[0]), (-1, size[1])):
        n = int(x.shape[axis])
        cells = [x.narrow(axis, i * n // m, -(-(i + 1) * n // m) - i * n // m)
                 .amax(dim=axis, keepdim=True) for i in range(m)]
        x = torch.cat(cells, dim=axis)
    return x


def init_official(model: nn.Module) -> None:
    """The official initialisation: conv ~ N(0, sqrt(2 / (k*k*out))), BN weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def zero_init_residual_branches(model: nn.Module) -> None:
    """Zero the last BN of each residual block, and of each root that has a residual, so that
    every residual branch starts as the identity and a deep net starts as a shallow one."""
    for m in model.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            nn.init.zeros_(m.last_bn.weight)
        elif isinstance(m, Root) and m.residual:
            nn.init.zeros_(m.bn.weight)


def resolve_genome(spec: AnyGenome | str | Path) -> AnyGenome:
    """A genome (a DLA's or a backbone's) from a genome, a YAML path (genome or exported
    config), a zoo name or a U-Net's name (a dense network: ``unet``, ``unet_<widths>``)."""
    if isinstance(spec, (Genome, BackboneGenome)):
        return spec.validate()
    from . import zoo  # zoo depends on genome only; imported late to keep import order simple
    from .unet import UNET_PATTERN, unet_widths

    text = str(spec)
    genome = zoo.find(text)
    if genome is not None:
        return genome
    if unet_widths(text):
        return BackboneGenome(text, task="dense").validate()
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise GenomeError(f"{path}: no such file")
        return genome_from_yaml(path)
    raise GenomeError(f"{text!r} is neither a zoo name ({', '.join(zoo.names())}, "
                      f"{zoo.PATTERNS}, {UNET_PATTERN}) nor a YAML file")


def build_model(
    genome: AnyGenome | str | Path,
    num_classes: int = 1000,
    in_chans: int = 3,
    zero_init_residual: bool = False,
    pretrained: str | Path | WeightsFile | None = None,
    init: str = "official",
) -> nn.Module:
    """Build a DLA network, or an existing network with a head.

    ``genome`` is a ``Genome``, a ``BackboneGenome``, a genome/exported YAML path, or a zoo
    name such as ``"dla34"`` or ``"resnet20"``.
    ``init``: ``"official"`` (the reference's initialisation, the default) or ``"torch"``
    (PyTorch's module defaults; see ``INITS``). ``zero_init_residual`` then starts every
    residual branch at zero (see ``zero_init_residual_branches``).
    ``pretrained`` loads weights over that initialisation: ``"official"``, ``"timm"``,
    ``"official:dla34"``, a URL or a file (``dla_nas.weights.sources``), or a resolved
    ``WeightsFile``. Tensors are matched by
    module path and shape, so the head is new when ``num_classes`` is not 1000, and a genome
    near a zoo network inherits what it shares with it; ``model.transfer_report`` says what
    was loaded. Feed such a network ImageNet-normalised inputs
    (``dla_nas.weights.imagenet_stats``). A backbone genome with ``weights: imagenet`` loads
    its backbone's ImageNet weights as it is built (``model.transfer_report``)."""
    if type(num_classes) is not int or num_classes < 1:
        raise GenomeError(f"num_classes: {num_classes!r} is not allowed (an integer >= 1)")
    if type(in_chans) is not int or not 1 <= in_chans <= MAX_IN_CHANS:
        raise GenomeError(f"in_chans: {in_chans!r} is not allowed (an integer from 1 to "
                          f"{MAX_IN_CHANS})")
    if init not in INITS:
        raise GenomeError(f"init: {init!r} is not allowed ({', '.join(INITS)})")
    genome = resolve_genome(genome)
    if isinstance(genome, BackboneGenome):  # an existing network with a head
        from ..backbones.build import build_backbone_model

        model = build_backbone_model(genome, num_classes, in_chans, init=init,
                                     zero_init_residual=zero_init_residual)
    else:
        model = DLA(genome, num_classes, in_chans)
        if init == "official":
            init_official(model)
        if zero_init_residual:
            zero_init_residual_branches(model)
    if pretrained is not None:
        from ..weights import load_pretrained  # weights -> download; only when asked for

        model.transfer_report = load_pretrained(model, pretrained)
    return model
