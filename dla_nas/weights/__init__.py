"""Pretrained weights: where they come from (``sources``: official, timm, URL, file, and the
cache), reading them safely (``loading``) and copying them into a network by module path and
shape (``transfer``), which also gives searched genomes the tensors they share with a zoo
network."""

from .sources import WeightsSource, cache_dir, parse_source, weights_file
from .transfer import (
                       Pretrained,
                       TransferReport,
                       imagenet_normalised,
                       imagenet_stats,
                       load_pretrained,
                       transfer_weights,
)

__all__ = ["Pretrained", "TransferReport", "WeightsSource", "cache_dir", "imagenet_normalised",
           "imagenet_stats", "load_pretrained", "parse_source", "transfer_weights",
           "weights_file"]
