"""The model of a ``BackboneGenome``: the backbone network, cut, with its head."""

from __future__ import annotations

import torch
from torch import nn

from ..arch.backbone_genome import LITE0, TIMM_PREFIX, BackboneGenome
from ..arch.unet import UNet
from ..weights.transfer import FIRST_CONV
from .attach import HeadConfig, TapClassifier, TapSegmenter
from .lite0 import CLASSIFIER, STEM, efficientnet_lite0
from .taps import FeatureTaps
from .timm_backbone import timm_features
from .zoo import dla_backbone

# the input side of the dry run that finds the taps' channels and strides (larger where a
# genome's strides need it: ``dry_run_size``)
DRY_RUN_SIZE = 64
UNET_STEM = "inc.0.weight"  # a U-Net's first conv (a weights file adapts it to the input)


class OwnHead(nn.Module):
    """A network as it is, with its own pooling and classifier (the module ``classifier``,
    which is new for the task)."""

    def __init__(self, net: nn.Module, classifier: str) -> None:
        super().__init__()
        self.net = net
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_submodule(self.classifier).parameters())


def new_classifier(net: nn.Module, name: str, num_classes: int) -> None:
    """Replace the linear layer ``name`` of ``net`` by a new one for ``num_classes``."""
    old = net.get_submodule(name)
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf,
            nn.Linear(old.in_features, num_classes))


def dry_run_size(genome: BackboneGenome) -> int:
    """The side of the dry run's input: ``DRY_RUN_SIZE``, or a deep genome's smallest input."""
    return max(DRY_RUN_SIZE, genome.zoo.min_input_size() if genome.zoo is not None else 0)


def network_taps(genome: BackboneGenome, in_chans: int, **build: object
                 ) -> tuple[nn.Module, list[str], str, str]:
    """``genome``'s backbone network for ``in_chans`` inputs (with its ImageNet weights where
    the genome says), its levels (module names, shallow to deep), its classifier's name and
    its first conv's weight (which a weights file adapts to ``in_chans``)."""
    if genome.zoo is not None:
        net, taps = dla_backbone(genome.zoo, in_chans=in_chans,
                                 input_size=dry_run_size(genome), **build)
        return net, taps, "fc", FIRST_CONV
    if genome.backbone == LITE0:
        return (*efficientnet_lite0(genome.pretrained, in_chans), CLASSIFIER, f"{STEM}.weight")
    net, taps = timm_features(genome.backbone.removeprefix(TIMM_PREFIX), genome.pretrained,
                              in_chans)
    cfg = net.default_cfg
    return net, taps, cfg.get("classifier", ""), f"{cfg.get('first_conv', '')}.weight"


def build_backbone_model(genome: BackboneGenome, num_classes: int, in_chans: int = 3,
                         **build: object) -> nn.Module:
    """``genome``'s model for ``num_classes`` and ``in_chans`` input channels; ``build``
    (``init``, ``zero_init_residual``) goes to ``build_model`` for a zoo backbone.
    ``model.transfer_report`` says what ImageNet weights were loaded (None: none);
    ``model.genome`` is ``genome``, as checkpoints record it; ``model.network`` is the
    backbone network and its first conv's weight, for a weights file of that network alone
    (``weights.load_pretrained``)."""
    if genome.unet:  # a dense network as it is
        unet = UNet(in_chans, num_classes, genome.unet)
        model: nn.Module = OwnHead(unet, "outc")
        model.transfer_report, model.genome, model.network = None, genome, (unet, UNET_STEM)
        return model
    own_head = genome.head.aggregation == "none" and genome.cut == 0 and genome.task != "dense"
    if genome.zoo is not None and own_head:  # the zoo network as it is
        from ..arch.builder import build_model

        net = build_model(genome.zoo, num_classes, in_chans, **build)
        model = OwnHead(net, "fc")
        model.transfer_report, model.genome, model.network = None, genome, (net, FIRST_CONV)
        return model
    net, taps, classifier, first_conv = network_taps(genome, in_chans, **build)
    report = getattr(net, "transfer_report", None)
    if own_head:
        new_classifier(net, classifier, num_classes)
        model = OwnHead(net, classifier)
    else:
        genome.check_levels(len(taps))
        kept = len(taps) - genome.cut
        head = genome.head
        model = (TapSegmenter if genome.task == "dense" else TapClassifier)(
            FeatureTaps(net, taps[kept - head.levels:kept], in_chans, dry_run_size(genome)),
            HeadConfig(num_classes, head.aggregation, head.width, head.kernel, head.residual,
                       head.upsample))
    model.transfer_report, model.genome, model.network = report, genome, (net, first_conv)
    return model
