"""A genome over an existing network: a backbone, its weights, a cut and a head.

This is the user's own model given aggregation, as data (the model itself is built by
``dla_nas.backbones.build``):

- ``backbone``: ``efficientnet_lite0`` (optional ``lite0`` packages), any zoo name or DLA
  genome's zoo name (``plain_cnn``, ``resnet20``, ``dla34`` ...), ``timm:NAME``, a U-Net
  (``unet``, ``unet_<w1>_<w2>...``: a dense network as it is, ``dla_nas.arch.unet``), or a
  DLA genome itself (a mapping, as a genome file holds it: a searched backbone, whose IDA
  links and trees a dense search draws with the head);
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
  ``none`` an FCN over the deepest level kept). The scores' stride before that upsampling
  (``output_stride``) is the shallowest aggregated level's for ``dla_up``, else the deepest
  kept level's: ``cut`` and ``levels`` choose it.

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
# efficientnet_lite0's levels (``backbones.lite0.LITE0_TAPS``): strides 2, 4, 8, 16 and 32
LITE0_STRIDES = (2, 4, 8, 16, 32)
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

    backbone: str | Genome
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
        if isinstance(raw.get("backbone"), Mapping):  # a DLA genome: a searched backbone
            try:
                raw["backbone"] = Genome.from_dict(raw["backbone"])
            except GenomeError as exc:
                raise GenomeError(f"backbone.{exc}") from None
        if "head" in raw:
            if not isinstance(raw["head"], Mapping):
                raise GenomeError(f"head: expected a mapping, got {type(raw['head']).__name__}")
            raw["head"] = Head(**_known(Head, raw["head"], "head."))
        return cls(**raw).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the head's unused fields (a node's with ``aggregation: none``) left out."""
        out = dataclasses.asdict(self)
        if isinstance(self.backbone, Genome):
            out["backbone"] = self.backbone.to_dict()
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
            return f"{self.label}: a U-Net of widths {'-'.join(map(str, self.unet))}"
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
        dense = ""
        if self.task == "dense":
            stride = self.output_stride
            dense = (f"; a class a pixel{f' at stride {stride}' if stride else ''}, upsampled "
                     "to the input")
        return f"{self.label} ({self.weights} weights), cut {self.cut}: {text}{dense}"

    @property
    def label(self) -> str:
        """The backbone in words: its name, or a DLA genome's name or hash."""
        if isinstance(self.backbone, Genome):
            return self.backbone.name or f"DLA genome {self.backbone.canonical_hash()}"
        return self.backbone

    # ---- identity ------------------------------------------------------------------------
    def canonical(self) -> "BackboneGenome":
        head = self.head
        if head.aggregation == "none":
            head = Head()
        elif head.aggregation == "tree" and head.levels == 2:  # the same network as IDA
            head = dataclasses.replace(head, aggregation="ida")
        if head.aggregation != "dla_up":
            head = dataclasses.replace(head, upsample=Head.upsample)
        backbone = self.backbone
        if isinstance(backbone, Genome):
            backbone = backbone.canonical()
        return dataclasses.replace(self, backbone=backbone, head=head, name="")

    # ---- checks --------------------------------------------------------------------------
    def validate(self) -> "BackboneGenome":
        """Raise ``GenomeError`` naming the first offending field and what is allowed. The
        level count of a timm backbone is checked when it is built."""
        if isinstance(self.backbone, Genome):
            try:
                self.backbone.validate()
            except GenomeError as exc:
                raise GenomeError(f"backbone.{exc}") from None
        elif not isinstance(self.backbone, str) or not (
                self.backbone == LITE0 or self.backbone.startswith(TIMM_PREFIX)
                and len(self.backbone) > len(TIMM_PREFIX) or self.unet
                or zoo.find(self.backbone)):
            raise GenomeError(f"backbone: {self.backbone!r} is not allowed ({LITE0}, a zoo "
                              f"name such as plain_cnn or dla34, {TIMM_PREFIX}NAME, "
                              "unet_<w1>_<w2>..., or a DLA genome as a mapping)")
        check("weights", self.weights, one_of(WEIGHTS), GenomeError)
        if self.unet:  # a whole dense network: nothing to cut or put a head on
            for name, value, allowed in (("task", self.task, "dense"), ("weights", self.weights,
                                         "none"), ("cut", self.cut, 0),
                                         ("head.aggregation", self.head.aggregation, "none")):
                if value != allowed:
                    raise GenomeError(f"{name}: {value!r} is not allowed with backbone "
                                      f"{self.label} ({allowed}: a U-Net is a dense "
                                      "network as it is)")
        if self.weights == "imagenet" and self.zoo is not None:
            raise GenomeError(f"weights: 'imagenet' is not allowed with backbone "
                              f"{self.label} (none: zoo networks start from the recipe's "
                              "init; official DLA weights come through --pretrained)")
        check("task", self.task, one_of(TASKS), GenomeError)
        check("cut", self.cut, integer(0), GenomeError)
        head = self.head
        check("head.aggregation", head.aggregation, one_of(HEAD_AGGREGATIONS), GenomeError)
        check("head.width", head.width, optional(integer(1, MAX_WIDTH)), GenomeError)
        check("head.kernel", head.kernel, one_of(NODE_KERNELS), GenomeError)
        check("head.residual", head.residual, boolean, GenomeError)
        check("head.upsample", head.upsample, one_of(UPSAMPLES), GenomeError)
        if head.aggregation == "none":
            check("head.levels", head.levels, one_of((1,)), GenomeError)
        else:
            check("head.levels", head.levels, integer(2), GenomeError)
        if self.level_count is not None:
            self.check_levels(self.level_count)
        if not isinstance(self.name, str):
            raise GenomeError(f"name: {self.name!r} is not allowed (a string)")
        return self

    def check_levels(self, total: int) -> None:
        """A ``GenomeError`` where the cut or the head takes more than the backbone's
        ``total`` levels (known from the genome, or once a timm network is built)."""
        own_head = self.head.aggregation == "none" and not self.cut and self.task != "dense"
        if total == 0 and not own_head:  # the network as it is needs no level
            raise GenomeError(f"backbone: {self.label} has no level a head can take (none is "
                              "downsampled: a stride-2 step is needed)")
        if self.cut >= max(total, 1):
            raise GenomeError(f"cut: {self.cut} is not allowed for {self.label} (it has {total}"
                              f" levels: 0 to {total - 1})")
        kept = total - self.cut
        if self.head.aggregation != "none" and self.head.levels > kept:
            raise GenomeError(f"head.levels: {self.head.levels} is not allowed (at most {kept}:"
                              f" {self.label} has {total} levels, cut {self.cut})")

    @functools.cached_property
    def zoo(self) -> Genome | None:
        """The DLA genome of a zoo or genome backbone, else None (read once: a DLA's is a
        YAML file)."""
        if isinstance(self.backbone, Genome):
            return self.backbone
        if self.backbone.startswith(TIMM_PREFIX) or self.unet:
            return None
        return zoo.find(self.backbone)

    @property
    def unet(self) -> tuple[int, ...] | None:
        """A U-Net backbone's widths, else None."""
        return unet_widths(self.backbone) if isinstance(self.backbone, str) else None

    @property
    def level_strides(self) -> list[int] | None:
        """The strides of the backbone's levels that a head can take (shallow to deep) when
        known before building (lite0, zoo and genome backbones), else None (timm, U-Net)."""
        if self.zoo is not None:  # the levels downsampled at least once (dla_backbone's)
            return [s for s in self.zoo.tap_strides() if s >= 2]
        return list(LITE0_STRIDES) if self.backbone == LITE0 else None

    @property
    def level_count(self) -> int | None:
        strides = self.level_strides
        return None if strides is None else len(strides)

    @property
    def output_stride(self) -> int | None:
        """A dense network's scores' stride before the upsampling to the input (see the
        module docstring); None where the levels are known only once built."""
        strides = self.level_strides
        if self.unet:
            return 1
        if strides is None:
            return None
        kept = strides[:len(strides) - self.cut]
        return kept[-self.head.levels] if self.head.aggregation == "dla_up" else kept[-1]

    @property
    def pretrained(self) -> bool:
        """Whether the weights expect ImageNet-normalised inputs."""
        return self.weights == "imagenet"

    # ---- geometry ------------------------------------------------------------------------
    def feature_sizes(self, size: int) -> list[int]:
        """Spatial size of each level for a square input of ``size`` px (a zoo backbone's
        own; lite0's at strides 2-32). Raises ``GenomeError`` below ``min_input_size``."""
        if self.zoo is not None:
            return self.zoo.feature_sizes(size)
        if size < self.min_input_size():
            raise GenomeError(f"input size {size} px is not allowed for {self.label} "
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
