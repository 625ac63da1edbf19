"""A dla-nas network (zoo name, genome or YAML) as a backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..arch.builder import DLA, build_model
from ..arch.genome import Genome
from .taps import FeatureTaps


def dla_backbone(spec: Genome | str | Path, *, in_chans: int = 3, input_size: int = 64,
                 **build: Any) -> tuple[DLA, list[str]]:
    """``build_model(spec, in_chans=in_chans, **build)`` and its levels (``level0`` ...)
    from the first that has been downsampled (stride 2 or more): the levels at full input
    resolution would cost an aggregation more than they give.

    The strides are measured on an ``input_size`` px input, not read from ``feature_info``:
    a ``pool_last`` stage max-pools after its module, so the module (the tap) gives its
    output at half the stride ``feature_info`` reports (``plain_cnn``: ``level1`` at 4)."""
    model = build_model(spec, in_chans=in_chans, **build)
    info = FeatureTaps(model, model.level_names, in_chans, input_size).feature_info
    return model, [d["module"] for d in info if d["reduction"] >= 2]
