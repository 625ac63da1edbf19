"""Cost accounting: parameters and MACs (multiply-accumulates), total and per level.

MACs are counted with fvcore's ``FlopCountAnalysis``, which counts one multiply-add as one
"flop". ``macs`` is the conv + linear (matmul) count, the number the DLA paper and timm
report. What fvcore also counts (batch norm, adaptive pooling, upsampling) is reported as
``other_flops``; element-wise ops (ReLU, residual adds, concatenation) and max-pooling are not
counted at all, and fvcore's warnings about skipping them are silenced.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .genome import Genome

# fvcore op names whose counts are multiply-accumulates of conv and linear layers
_MAC_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


@dataclass(frozen=True)
class LevelCost:
    """Cost of one level (stem level, stage or head) at the counted input size."""

    name: str
    params: int
    macs: int
    channels: int
    size: int


@dataclass(frozen=True)
class Cost:
    """Parameters and MACs of a model for one input shape ``(C, H, W)``."""

    params: int
    macs: int
    other_flops: int
    input_shape: tuple[int, int, int]
    levels: list[LevelCost] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, dict[str, int]]:
    """fvcore counts by module name: ``{module: {"macs": n, "other": n}}`` ("" is the total)."""
    with warnings.catch_warnings():  # fvcore's import touches the deprecated torch.jit.script
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(1, *input_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            # fvcore logs per-op notes through its own logger even with warnings off
            logger = logging.getLogger("fvcore.nn.jit_analysis")
            level = logger.level
            logger.setLevel(logging.ERROR)
            try:
                by_op = analysis.by_module_and_operator()
            finally:
                logger.setLevel(level)
    finally:
        model.train(was_training)
    out = {}
    for name, ops in by_op.items():
        macs = sum(v for k, v in ops.items() if k in _MAC_OPS)
        out[name] = {"macs": macs, "other": sum(ops.values()) - macs}
    return out


def model_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> Cost:
    """Params and MACs of a built DLA model, with a per-level breakdown (and the head)."""
    counts = count_macs(model, input_shape)
    levels = []
    genome = getattr(model, "genome", None)
    if isinstance(genome, Genome):  # a DLA: per level (a backbone genome's model: totals)
        sizes = genome.feature_sizes(min(input_shape[1:]))
        stem_params = count_params(model.base_layer)
        for i, (info, size) in enumerate(zip(model.feature_info, sizes)):
            name = info["module"]
            module = getattr(model, name)
            params, macs = count_params(module), counts.get(name, {}).get("macs", 0)
            if i == 0:  # the base conv belongs to the first level
                params += stem_params
                macs += counts.get("base_layer", {}).get("macs", 0)
            levels.append(LevelCost(name, params, macs, info["num_chs"], size))
        levels.append(LevelCost("head", count_params(model.fc),
                                counts.get("fc", {}).get("macs", 0), model.num_classes, 1))
    total = counts.get("", {"macs": 0, "other": 0})
    return Cost(count_params(model), total["macs"], total["other"], tuple(input_shape), levels)


def genome_cost(genome: Genome, input_shape: tuple[int, int, int], num_classes: int) -> Cost:
    """Cost of a genome without training it (builds the model on CPU)."""
    from .builder import build_model

    genome.check_input(input_shape)  # a clear error before building
    return model_cost(build_model(genome, num_classes, in_chans=input_shape[0]), input_shape)
