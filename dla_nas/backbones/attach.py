"""A classifier over any backbone's taps: a new head, with or without aggregation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.blocks import conv_bn
from ..arch.builder import _adaptive_max_pool
from ..checks import boolean, check_fields, integer, one_of, optional
from ..errors import BackboneError
from .taps import FeatureTaps

AGGREGATIONS = ("none", "ida")


@dataclass(frozen=True)
class HeadConfig:
    """How the taps become logits: ``aggregation`` (``AGGREGATIONS``), and for "ida" the
    nodes' ``width`` (None: the deepest tap's channels), ``kernel`` and ``residual``."""

    num_classes: int
    aggregation: str = "ida"
    width: int | None = None
    kernel: int = 3
    residual: bool = False

    def __post_init__(self) -> None:
        check_fields(self, {"num_classes": integer(1), "aggregation": one_of(AGGREGATIONS),
                            "width": optional(integer(1)), "kernel": one_of((1, 3)),
                            "residual": boolean}, BackboneError)


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Conv ('same' padding) + BN + ReLU: a projection or an aggregation node."""
    return nn.Sequential(*conv_bn(c_in, c_out, kernel), nn.ReLU(inplace=True))


class Deepest(nn.Module):
    """No aggregation: the deepest tap alone."""

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1]


class IDA(nn.Module):
    """Iterative deep aggregation, shallow to deep (the DLA paper): each tap projected to
    ``width`` channels (1x1 conv + BN + ReLU), then x = level 0 and, for each deeper level,
    x = node(concat(x max-pooled to the level's size, level)), node = ``kernel`` conv + BN +
    ReLU; with ``residual``, plus the level (as the paper's residual root)."""

    def __init__(self, channels: list[int], width: int, kernel: int = 3,
                 residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.project = nn.ModuleList(conv_bn_relu(c, width, 1) for c in channels)
        self.nodes = nn.ModuleList(conv_bn_relu(2 * width, width, kernel) for _ in channels[1:])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        feats = [project(f) for project, f in zip(self.project, feats)]
        x = feats[0]
        for node, f in zip(self.nodes, feats[1:]):
            x = node(torch.cat([max_pool_to(x, f), f], 1)) + (f if self.residual else 0)
        return x


def max_pool_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Adaptive max-pooling of ``x`` to the size of ``like`` (as the DLA's own IDA edges: any
    stride or rounding fits), in ops that ONNX export takes even where it cannot infer the
    sizes (after a Pad, as in EfficientNet's 'same' convs): a plain max-pool where the sides
    divide, else ``_adaptive_max_pool`` (slices while exporting)."""
    (h, w), (m, n) = ([int(s) for s in t.shape[-2:]] for t in (x, like))  # constants
    if h % m == 0 and w % n == 0:
        return F.max_pool2d(x, (h // m, w // n))
    return _adaptive_max_pool(x, (m, n))


class TapClassifier(nn.Module):
    """``backbone`` (a ``FeatureTaps``), an aggregation of its taps, global average pooling
    and a linear classifier; ``forward`` returns logits (N, num_classes)."""

    def __init__(self, backbone: FeatureTaps, head: HeadConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_config = head
        self.feature_info = backbone.feature_info
        channels = [d["num_chs"] for d in self.feature_info]
        if head.aggregation == "ida":
            width = head.width or channels[-1]
            self.neck: nn.Module = IDA(channels, width, head.kernel, head.residual)
        else:
            width = channels[-1]
            self.neck = Deepest()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, head.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(self.neck(self.backbone(x))).flatten(1))

    def head_parameters(self) -> list[nn.Parameter]:
        """What is new over the backbone (the aggregation and the classifier): what trains
        at the full learning rate while the backbone is held still or slowed down."""
        return [*self.neck.parameters(), *self.fc.parameters()]


def attach(model: nn.Module, taps: list[str], num_classes: int, *, aggregation: str = "ida",
           width: int | None = None, kernel: int = 3, residual: bool = False,
           in_chans: int = 3, input_size: int = 64) -> TapClassifier:
    """``model`` as a classifier of ``num_classes``: its ``taps`` (module names, shallow to
    deep) aggregated as ``aggregation`` says ("ida", or "none": the deepest tap alone, the
    model as a plain feature extractor), pooled, and a new linear layer; IDA's nodes have
    ``width`` channels (None: the deepest tap's), a ``kernel`` of 1 or 3, and a ``residual``.
    The taps' channels and strides come from one dry run on an ``in_chans`` x
    ``input_size`` px input."""
    head = HeadConfig(num_classes, aggregation, width, kernel, residual)
    return TapClassifier(FeatureTaps(model, taps, in_chans, input_size), head)
