"""Backbones: a backbone is any model with named feature taps.

``FeatureTaps`` (``taps``) turns a model and the names of some of its modules into a feature
extractor with ``feature_info``; ``attach`` puts a classifier over the taps, aggregated by
iterative deep aggregation, a tree, the paper's DLA-up, or not at all (``build`` makes a
backbone genome's model, a classifier or a dense network). Networks with their taps:
``dla_backbone`` (the zoo, genomes), ``efficientnet_lite0`` (the optional ``lite0``
packages) and ``timm_features`` (timm).
"""

from .attach import attach
from .lite0 import efficientnet_lite0
from .taps import FeatureTaps
from .timm_backbone import timm_features
from .zoo import dla_backbone

__all__ = ["FeatureTaps", "attach", "dla_backbone", "efficientnet_lite0", "timm_features"]
