"""A genome over an existing network: a backbone, its weights, a cut and a head.

This is the user's own model given aggregation, as data (the model itself is built by
``dla_nas.backbones.build``):

- ``backbone``: ``efficientnet_lite0`` (optional ``lite0`` packages), any zoo name or DLA
  genome's zoo name (``plain_cnn``, ``resnet20``, ``dla34`` ...), ``timm:NAME``, or a U-Net
  (``unet``, ``unet_<w1>_<w2>...``: a dense network as it is, ``dla_nas.arch.unet``);
- ``weights``: ``imagenet`` (lite0 and timm: the weights they ship) or ``none`` (PyTorch's or
  the recipe's init). ImageNet weights are fed ImageNet-normalised inputs;
- ``cut``: how many of the deepest levels are dropped, so that aggregation over the levels
  left can cost fewer MACs than the whole network;
- ``head``: ``aggregation: none`` is the backbone as it is (its own pooling and classifier,
  with a new last linear layer; the deepest level kept, pooled, when something is cut);
  ``ida`` is the paper's iterative deep aggregation over the deepest ``levels`` levels kept,
  shallow to deep; ``tree`` a balanced binary tree over them (over two levels, ``ida``: the
  same hash); ``dla_up`` the paper's DLA-up, deep to shallow, at the shallowest aggregated
  level's resolution (the dense-prediction decoder, pooled here). Their nodes have a
  ``kernel`` and a ``width`` (and a ``residual``: each node's second input added to its
  output). ``dla_nas.backbones.attach`` says exactly how each one is wired.

- ``task``: ``classify`` (the default: one class an image) or ``dense`` (a class a pixel:
  segmentation; the aggregation's output scored by a 1x1 conv and upsampled bilinearly to
  the input's size; with ``dla_up`` that is the paper's DLA-up segmentation network, with
  ``none`` an FCN over the deepest level kept).

One canonical hash covers all of it, as for a DLA genome.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..checks import boolean, check, integer, one_of, optional
from ..errors import GenomeError
from . import zoo
from .genome import MIN_INPUT, Genome, GenomeText, read_genome
from .unet import unet_widths

LITE0 = "efficientnet_lite0"
TIMM_PREFIX = "timm:"
WEIGHTS = ("none", "imagenet")
HEAD_AGGREGATIONS = ("none", "ida", "tree", "dla_up")
TASKS = ("classify", "dense")
UPSAMPLES = ("deconv", "bilinear")  # DLA-up's: learnt from a bilinear start, or fixed
NODE_KERNELS = (1, 3)
# efficientnet_lite0's levels (``backbones.lite0.LITE0_TAPS``): strides 4, 8, 16 and 32
LITE0_STRIDES = (4, 8, 16, 32)
MAX_WIDTH = 4096

@dataclass(frozen=True)
class Head:
    """How the kept levels become logits (see the module docstring). ``width`` None: the
    deepest aggregated level's channels."""

    aggregation: str = "none"
    levels: int = 1
    width: int | None = None
    kernel: int = 3
    residual: bool = False
    upsample: str = "deconv"  # dla_up only (UPSAMPLES)


@dataclass(frozen=True)
class BackboneGenome(GenomeText):
    """An existing network with a head: the ``backbone``, its ``weights``, the deepest levels
    ``cut`` off, and the ``head``. ``name`` is a label, not structure."""

    backbone: str
    weights: str = "none"
    cut: int = 0
    head: Head = field(default_factory=Head)
    task: str = "classify"
    name: str = ""

    # ---- serialisation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BackboneGenome":
        if not isinstance(data, Mapping):
            raise GenomeError(f"genome: expected a mapping, got {type(data).__name__}")
        raw = _known(cls, data, "")
        if "head" in raw:
            if not isinstance(raw["head"], Mapping):
                raise GenomeError(f"head: expected a mapping, got {type(raw['head']).__name__}")
            raw["head"] = Head(**_known(Head, raw["head"], "head."))
        return cls(**raw).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the head's unused fields (a node's with ``aggregation: none``) left out."""
        out = dataclasses.asdict(self)
        if self.head.aggregation == "none":
            out["head"] = {"aggregation": "none"}
        elif self.head.width is None:
            del out["head"]["width"]
        if self.head.aggregation != "dla_up":
            out["head"].pop("upsample", None)
        if not self.name:
            del out["name"]
        if self.task == "classify":  # the default: left out, so older genomes keep their hash
            del out["task"]
        return out

    def describe(self) -> str:
        """One line: the backbone, its weights, the cut and the head."""
        head = self.head
        if self.unet:
            return f"{self.backbone}: a U-Net of widths {'-'.join(map(str, self.unet))}"
        if head.aggregation == "none" and self.task == "dense":
            text = "an FCN over the deepest level kept"
        elif head.aggregation == "none":
            text = "its own head" if not self.cut else "the deepest level kept, pooled, linear"
        else:
            kind = {"ida": "IDA", "tree": "a tree",
                    "dla_up": f"DLA-up ({head.upsample} upsampling)"}[head.aggregation]
            text = (f"{kind} over the deepest {head.levels} levels kept (nodes {head.kernel}x"
                    f"{head.kernel}, width {head.width or 'of the deepest'}"
                    f"{', residual' if head.residual else ''})")
        dense = "; a class a pixel, upsampled to the input" if self.task == "dense" else ""
        return f"{self.backbone} ({self.weights} weights), cut {self.cut}: {text}{dense}"

    # ---- identity ------------------------------------------------------------------------
    def canonical(self) -> "BackboneGenome":
        head = self.head
        if head.aggregation == "none":
            head = Head()
        elif head.aggregation == "tree" and head.levels == 2:  # the same network as IDA
            head = dataclasses.replace(head, aggregation="ida")
        if head.aggregation != "dla_up":
            head = dataclasses.replace(head, upsample=Head.upsample)
        return dataclasses.replace(self, head=head, name="")

    # ---- checks --------------------------------------------------------------------------
    def validate(self) -> "BackboneGenome":
        """Raise ``GenomeError`` naming the first offending field and what is allowed. The
        level count of a zoo or timm backbone is checked when it is built."""
        if not isinstance(self.backbone, str) or not (
                self.backbone == LITE0 or self.backbone.startswith(TIMM_PREFIX)
                and len(self.backbone) > len(TIMM_PREFIX) or self.unet
                or zoo.find(self.backbone)):
            raise GenomeError(f"backbone: {self.backbone!r} is not allowed ({LITE0}, a zoo "
                              f"name such as plain_cnn or dla34, {TIMM_PREFIX}NAME, or "
                              "unet_<w1>_<w2>...)")
        check("weights", self.weights, one_of(WEIGHTS), GenomeError)
        if self.unet:  # a whole dense network: nothing to cut or put a head on
            for name, value, allowed in (("task", self.task, "dense"), ("weights", self.weights,
                                         "none"), ("cut", self.cut, 0),
                                         ("head.aggregation", self.head.aggregation, "none")):
                if value != allowed:
                    raise GenomeError(f"{name}: {value!r} is not allowed with backbone "
                                      f"{self.backbone} ({allowed}: a U-Net is a dense "
                                      "network as it is)")
        if self.weights == "imagenet" and self.zoo is not None:
            raise GenomeError(f"weights: 'imagenet' is not allowed with backbone "
                              f"{self.backbone} (none: zoo networks start from the recipe's "
                              "init; official DLA weights come through --pretrained)")
        check("task", self.task, one_of(TASKS), GenomeError)
        check("cut", self.cut, integer(0, self.level_count - 1 if self.level_count else None),
              GenomeError)
        head = self.head
        check("head.aggregation", head.aggregation, one_of(HEAD_AGGREGATIONS), GenomeError)
        check("head.width", head.width, optional(integer(1, MAX_WIDTH)), GenomeError)
        check("head.kernel", head.kernel, one_of(NODE_KERNELS), GenomeError)
        check("head.residual", head.residual, boolean, GenomeError)
        check("head.upsample", head.upsample, one_of(UPSAMPLES), GenomeError)
        if head.aggregation == "none":
            check("head.levels", head.levels, one_of((1,)), GenomeError)
        else:
            kept = self.level_count - self.cut if self.level_count else None
            check("head.levels", head.levels, integer(2, kept), GenomeError)
        if not isinstance(self.name, str):
            raise GenomeError(f"name: {self.name!r} is not allowed (a string)")
        return self

    @functools.cached_property
    def zoo(self) -> Genome | None:
        """The zoo genome of a zoo backbone, else None (read once: a DLA's is a YAML file)."""
        if self.backbone.startswith(TIMM_PREFIX) or self.unet:
            return None
        return zoo.find(self.backbone)

    @property
    def unet(self) -> tuple[int, ...] | None:
        """A U-Net backbone's widths, else None."""
        return unet_widths(self.backbone)

    @property
    def level_count(self) -> int | None:
        """The backbone's levels when known before building (lite0), else None."""
        return len(LITE0_STRIDES) if self.backbone == LITE0 else None

    @property
    def pretrained(self) -> bool:
        """Whether the weights expect ImageNet-normalised inputs."""
        return self.weights == "imagenet"

    # ---- geometry ------------------------------------------------------------------------
    def feature_sizes(self, size: int) -> list[int]:
        """Spatial size of each level for a square input of ``size`` px (a zoo backbone's
        own; lite0's at strides 4-32). Raises ``GenomeError`` below ``min_input_size``."""
        if self.zoo is not None:
            return self.zoo.feature_sizes(size)
        if size < self.min_input_size():
            raise GenomeError(f"input size {size} px is not allowed for {self.backbone} "
                              f"(>= {self.min_input_size()})")
        strides = [2 ** i for i in range(len(self.unet))] if self.unet else LITE0_STRIDES
        return [math.ceil(size / s) for s in strides]

    def check_input(self, shape: tuple[int, int, int]) -> list[int]:
        return self.feature_sizes(min(shape[1:]))

    def min_input_size(self) -> int:
        if self.zoo is not None:
            return self.zoo.min_input_size()
        if self.unet:
            return max(MIN_INPUT, 2 ** (len(self.unet) - 1))
        return max(MIN_INPUT, LITE0_STRIDES[-1])


AnyGenome = Genome | BackboneGenome


def genome_from_dict(data: Any) -> AnyGenome:
    """A DLA genome, or a backbone genome where ``data`` names a ``backbone``."""
    if isinstance(data, Mapping) and "backbone" in data:
        return BackboneGenome.from_dict(data)
    return Genome.from_dict(data)


def genome_from_yaml(path: str | Path) -> AnyGenome:
    """A genome YAML file of either kind (an exported model config, with ``genome:``, too)."""
    return read_genome(path, genome_from_dict)


def _known(cls: type, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise GenomeError(f"{prefix}{key}: unknown field (allowed: {', '.join(known)})")
    return dict(data)
