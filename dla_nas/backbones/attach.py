"""A classifier over any backbone's taps: a new head, with or without aggregation.

The aggregations (``HEAD_AGGREGATIONS``) over taps l0 (shallowest) .. lk (deepest), each first
projected to ``width`` channels, every node a ``kernel`` conv + BN + ReLU over the
concatenation of two inputs brought to one size:

- ``none``: lk alone;
- ``ida``: a chain, shallow to deep: x = node(x pooled, l_i) for i = 1..k (the paper's IDA);
- ``tree``: a balanced binary tree: the shallower half's tree pooled and the deeper half's
  merged by one node, recursively, so no level is more than ceil(log2(k+1)) nodes from the
  root (HDA's idea over a backbone's levels); over two levels it is ``ida``;
- ``dla_up``: the paper's DLA-up for dense prediction, deep to shallow: step j merges levels
  k-j-1 .. k at level k-j-1's resolution (IDA-up: the deeper ones upsampled by bilinear-
  initialised depthwise transposed convs, then a chain of nodes), and its node outputs replace
  the deeper levels for the next step; the output is at l0's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.backbone_genome import HEAD_AGGREGATIONS, NODE_KERNELS, UPSAMPLES
from ..arch.blocks import conv_bn, fit_to
from ..arch.builder import _adaptive_max_pool
from ..checks import boolean, check_fields, integer, one_of, optional
from ..errors import BackboneError
from .taps import FeatureTaps


@dataclass(frozen=True)
class HeadConfig:
    """How the taps become logits: ``aggregation`` (``HEAD_AGGREGATIONS``), and for all but
    "none" the nodes' ``width`` (None: the deepest tap's channels), ``kernel`` and
    ``residual``."""

    num_classes: int
    aggregation: str = "ida"
    width: int | None = None
    kernel: int = 3
    residual: bool = False
    upsample: str = "deconv"  # dla_up's (UPSAMPLES)

    def __post_init__(self) -> None:
        check_fields(self, {"num_classes": integer(1),
                            "aggregation": one_of(HEAD_AGGREGATIONS),
                            "width": optional(integer(1)), "kernel": one_of(NODE_KERNELS),
                            "residual": boolean, "upsample": one_of(UPSAMPLES)}, BackboneError)


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Conv ('same' padding) + BN + ReLU: a projection or an aggregation node."""
    return nn.Sequential(*conv_bn(c_in, c_out, kernel), nn.ReLU(inplace=True))


class Deepest(nn.Module):
    """No aggregation: the deepest tap alone."""

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1]


def projections(channels: list[int], width: int) -> nn.ModuleList:
    """Each tap projected to ``width`` channels: 1x1 conv + BN + ReLU."""
    return nn.ModuleList(conv_bn_relu(c, width, 1) for c in channels)


class Nodes(nn.Module):
    """``count`` aggregation nodes, each a ``kernel`` conv + BN + ReLU over two inputs of
    ``width`` channels concatenated; with ``residual`` a node's output adds its second input
    (as the paper's residual root). With ``channels``, each of those levels is first
    projected to ``width`` (``project``), built before the nodes: the order the seeded
    initial weights are drawn in."""

    def __init__(self, width: int, kernel: int, residual: bool, count: int,
                 channels: list[int] | None = None) -> None:
        super().__init__()
        self.residual = residual
        if channels is not None:
            self.project = projections(channels, width)
        self.nodes = nn.ModuleList(conv_bn_relu(2 * width, width, kernel) for _ in range(count))

    def merge(self, i: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Node ``i`` over ``a`` and ``b`` (the same size)."""
        return self.nodes[i](torch.cat([a, b], 1)) + (b if self.residual else 0)


class LevelNodes(Nodes):
    """Each of the levels' ``channels`` projected to ``width``, and one node fewer than
    levels: what IDA and the tree share (the same modules, wired otherwise)."""

    def __init__(self, channels: list[int], width: int, kernel: int = 3,
                 residual: bool = False) -> None:
        super().__init__(width, kernel, residual, len(channels) - 1, channels)

    def projected(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [project(f) for project, f in zip(self.project, feats)]


class IDA(LevelNodes):
    """Iterative deep aggregation, shallow to deep (the DLA paper): x = level 0 and, for each
    deeper level, x = node(x max-pooled to the level's size, level)."""

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        feats = self.projected(feats)
        x = feats[0]
        for i, f in enumerate(feats[1:]):
            x = self.merge(i, max_pool_to(x, f), f)
        return x


class TreeAggregation(LevelNodes):
    """A balanced binary tree over the levels: the shallower half's tree, max-pooled, and the
    deeper half's merged by one node (nodes numbered in the order they run, so that over two
    levels it is ``IDA``, weights and all)."""

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self._tree(self.projected(feats), iter(range(len(self.nodes))))

    def _tree(self, feats: list[torch.Tensor], order) -> torch.Tensor:
        if len(feats) == 1:
            return feats[0]
        half = len(feats) // 2  # the deeper half takes the odd level
        shallow, deep = self._tree(feats[:half], order), self._tree(feats[half:], order)
        return self.merge(next(order), max_pool_to(shallow, deep), deep)


class DLAUp(nn.Module):
    """The paper's DLA-up (see the module docstring): ``forward`` gives the features at the
    shallowest level's resolution with ``width`` channels. ``reductions`` are the levels'
    strides as a dry run measured them; each upsampling is by the nearest whole ratio of
    two neighbours' (at least 1), and its output is cropped or edge-padded to the size of the
    level it meets, so any rounding of odd sides fits."""

    def __init__(self, channels: list[int], reductions: list[int], width: int,
                 kernel: int = 3, residual: bool = False, upsample: str = "deconv") -> None:
        super().__init__()
        self.project = projections(channels, width)
        # the step from level ``start`` merges it with the deeper ones, which the step before
        # left at level start + 1's resolution
        self.steps = nn.ModuleList(
            IDAUp([max(1, round(reductions[start + 1] / reductions[start]))]
                  * (len(channels) - start - 1), width, kernel, residual, upsample)
            for start in reversed(range(len(channels) - 1)))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        feats = [project(f) for project, f in zip(self.project, feats)]
        for step in self.steps:
            start = len(feats) - len(step.up) - 1
            feats[start + 1:] = step(feats[start:])
        return feats[-1]


class IDAUp(Nodes):
    """One step of DLA-up: ``levels[0]`` and the deeper ``levels[1:]`` (each upsampled by
    its ``factors`` entry, then brought to ``levels[0]``'s size) merged as a chain of nodes,
    shallow to deep, x = node(x, level); returns every node's output. ``upsample``:
    ``deconv`` (learnt, from bilinear weights: the paper's) or ``bilinear`` (fixed)."""

    def __init__(self, factors: list[int], width: int, kernel: int, residual: bool,
                 upsample: str = "deconv") -> None:
        super().__init__(width, kernel, residual, len(factors))
        self.up = nn.ModuleList(bilinear_up(width, f) if upsample == "deconv" else
                                nn.Upsample(scale_factor=f, mode="bilinear") if f > 1 else
                                nn.Identity() for f in factors)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        x, outs = levels[0], []
        for i, (up, f) in enumerate(zip(self.up, levels[1:])):
            x = self.merge(i, x, fit_to(up(f), x))
            outs.append(x)
        return outs


def bilinear_up(width: int, factor: int) -> nn.Module:
    """A depthwise transposed conv that upsamples by ``factor`` (output ``factor`` x the
    input, plus one where ``factor`` is odd), its kernel set to bilinear interpolation, as
    the paper's ``fill_up_weights``; it then learns. Factor 1: nothing."""
    if factor == 1:
        return nn.Identity()
    up = nn.ConvTranspose2d(width, width, 2 * factor, factor, factor // 2, groups=width,
                            bias=False)
    centre = (2 * factor - 1) / 2
    ramp = 1 - (torch.arange(2 * factor) - centre).abs() / factor
    with torch.no_grad():
        up.weight.copy_((ramp[:, None] * ramp[None, :]).expand_as(up.weight))
    return up


def max_pool_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Adaptive max-pooling of ``x`` to the size of ``like`` (as the DLA's own IDA edges: any
    stride or rounding fits), in ops that ONNX export takes even where it cannot infer the
    sizes (after a Pad, as in EfficientNet's 'same' convs): a plain max-pool where the sides
    divide, else ``_adaptive_max_pool`` (slices while exporting)."""
    (h, w), (m, n) = ([int(s) for s in t.shape[-2:]] for t in (x, like))  # constants
    if h % m == 0 and w % n == 0:
        return F.max_pool2d(x, (h // m, w // n))
    return _adaptive_max_pool(x, (m, n))


def make_neck(feature_info: list[dict], head: HeadConfig) -> tuple[nn.Module, int, int]:
    """``head``'s aggregation over taps of ``feature_info``: the module, its output's
    channels and its output's stride (DLA-up's: the shallowest tap's; else the deepest's)."""
    channels = [d["num_chs"] for d in feature_info]
    reductions = [d["reduction"] for d in feature_info]
    if head.aggregation == "none":
        return Deepest(), channels[-1], reductions[-1]
    width = head.width or channels[-1]
    if head.aggregation == "dla_up":
        return DLAUp(channels, reductions, width, head.kernel, head.residual,
                     head.upsample), width, reductions[0]
    neck = IDA if head.aggregation == "ida" else TreeAggregation
    return neck(channels, width, head.kernel, head.residual), width, reductions[-1]


class TapClassifier(nn.Module):
    """``backbone`` (a ``FeatureTaps``), an aggregation of its taps, global average pooling
    and a linear classifier; ``forward`` returns logits (N, num_classes)."""

    def __init__(self, backbone: FeatureTaps, head: HeadConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_config = head
        self.feature_info = backbone.feature_info
        self.neck, width, _ = make_neck(self.feature_info, head)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, head.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(self.neck(self.backbone(x))).flatten(1))

    def head_parameters(self) -> list[nn.Parameter]:
        """What is new over the backbone (the aggregation and the classifier): what trains
        at the full learning rate while the backbone is held still or slowed down."""
        return [*self.neck.parameters(), *self.fc.parameters()]


class TapSegmenter(nn.Module):
    """A dense task over ``backbone``'s taps: their aggregation (DLA-up keeps the shallowest
    tap's resolution), a 1x1 conv to class scores there, and bilinear upsampling to the
    input's size; ``forward`` returns logits (N, num_classes, H, W). With no aggregation it
    is an FCN over the deepest tap."""

    def __init__(self, backbone: FeatureTaps, head: HeadConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_config = head
        self.feature_info = backbone.feature_info
        self.neck, width, self.output_stride = make_neck(self.feature_info, head)
        self.classifier = nn.Conv2d(width, head.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.neck(self.backbone(x)))
        return F.interpolate(logits, size=[int(s) for s in x.shape[-2:]], mode="bilinear",
                             align_corners=False)

    def head_parameters(self) -> list[nn.Parameter]:
        """The aggregation and the classifier (see ``TapClassifier.head_parameters``)."""
        return [*self.neck.parameters(), *self.classifier.parameters()]


def attach(model: nn.Module, taps: list[str], num_classes: int, *, aggregation: str = "ida",
           width: int | None = None, kernel: int = 3, residual: bool = False,
           in_chans: int = 3, input_size: int = 64) -> TapClassifier:
    """``model`` as a classifier of ``num_classes``: its ``taps`` (module names, shallow to
    deep) aggregated as ``aggregation`` says ("ida", "tree", "dla_up", or "none": the deepest
    tap alone, the model as a plain feature extractor), pooled, and a new linear layer; nodes
    have ``width`` channels (None: the deepest tap's), a ``kernel`` of 1 or 3, and a
    ``residual`` (see the module docstring). The taps' channels and strides come from one
    dry run on an ``in_chans`` x ``input_size`` px input."""
    head = HeadConfig(num_classes, aggregation, width, kernel, residual)
    return TapClassifier(FeatureTaps(model, taps, in_chans, input_size), head)
