"""Architectures: genomes (DLA, backbone), the builder, the official zoo (``zoo``), cost
counting, latency, the hand-designed baselines and U-Nets.

The names below are the public API; they are imported on first use."""

from __future__ import annotations

from ..lazy import lazy_names

PUBLIC_NAMES = {
    "Genome": ".genome",
    "Stage": ".genome",
    "Stem": ".genome",
    "StemLevel": ".genome",
    "BackboneGenome": ".backbone_genome",
    "Head": ".backbone_genome",
    "genome_from_dict": ".backbone_genome",
    "genome_from_yaml": ".backbone_genome",
    "DLA": ".builder",
    "build_model": ".builder",
    "Cost": ".cost",
    "count_macs": ".cost",
    "count_params": ".cost",
    "genome_cost": ".cost",
    "model_cost": ".cost",
    "baseline_genome": ".baselines",
    "UNet": ".unet",
    "Latency": ".latency",
    "model_latency": ".latency",
}
__all__ = sorted(PUBLIC_NAMES)
__getattr__, __dir__ = lazy_names(__name__, PUBLIC_NAMES)
