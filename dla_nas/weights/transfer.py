"""Copying pretrained tensors into a network: by module path and shape.

The same rule serves the zoo networks and searched genomes. A zoo network takes its own
ImageNet weights whole (the official files' unused projections are skipped); a genome near
it inherits every tensor whose path and shape match, and the rest keep their fresh
initialisation. The head (``fc``) is new whenever ``num_classes`` differs from the file's.
The first conv is adapted when the input has other than 3 channels: grey images take the
sum of the RGB kernels, so a grey image gives what the RGB network gives on it repeated
three times.

Coverage is the fraction of the network's parameters (elements, buffers excluded) that came
from the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import Dataset
from ..errors import WeightsError
from .loading import read_state_dict
from .sources import WeightsFile, parse_source, weights_file

FIRST_CONV = "base_layer.0.weight"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TransferReport:
    """What a transfer loaded, adapted and skipped, and the coverage it reached."""

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # "name: what was changed"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # file tensors not used, why
    missing: list[str] = field(default_factory=list)  # network tensors left as initialised
    coverage: float = 0.0
    file: str = ""
    sha256: str = ""
    checked: bool = False

    def summary(self) -> str:
        """One line: what was loaded from where, and what was not."""
        text = (f"pretrained {self.source}: {len(self.loaded)} tensors loaded, "
                f"{self.coverage:.1%} of the parameters")
        if self.adapted:
            text += f"; adapted {', '.join(self.adapted)}"
        if self.missing:
            text += f"; {len(self.missing)} new ({_names(self.missing)})"
        if self.skipped:
            text += f"; {len(self.skipped)} in the file unused ({_names([k for k, _ in self.skipped])})"
        return text + ("" if self.checked else "; no hash to check the file against")

    def to_record(self, detail: bool = True) -> dict:
        """Plain data for records: the source, the file's sha256 and the coverage; with
        ``detail`` (checkpoints) also the file, the count loaded, and which tensors are new
        or adapted."""
        out = {"source": self.source, "sha256": self.sha256, "coverage": round(self.coverage, 6)}
        if detail:
            out.update(file=self.file, loaded=len(self.loaded), new=self.missing,
                       adapted=self.adapted)
        return out


def _names(keys: list[str], shown: int = 4) -> str:
    more = f", +{len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def adapt_input_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-conv kernel for ``in_chans`` inputs from an RGB one: the sum over RGB for one
    channel; otherwise RGB repeated, cut to ``in_chans`` and scaled by 3 / ``in_chans``, which
    keeps the response to a uniform image."""
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def transfer_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                     first_conv: str = FIRST_CONV) -> TransferReport:
    """Copy each tensor of ``state`` whose module path and shape match ``model``'s into it;
    ``first_conv`` (the input conv's weight) is adapted to the model's input channels."""
    report = TransferReport(source)
    own = model.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():
            target = own.get(key)
            if target is None:
                report.skipped.append((key, "not in this network"))
                continue
            if (key == first_conv and tensor.ndim == 4 and tensor.shape[1] != target.shape[1]
                    and tensor.shape[1] == 3 and tensor.shape[2:] == target.shape[2:]):
                tensor = adapt_input_channels(tensor, target.shape[1])
                report.adapted.append(f"{key} (3 -> {target.shape[1]} input channels)")
            if tensor.shape != target.shape:
                report.skipped.append((key, f"shape {tuple(tensor.shape)}, here "
                                            f"{tuple(target.shape)}"))
                continue
            target.copy_(tensor.to(target.dtype))
            if not key.endswith("num_batches_tracked"):  # a counter: loads, but is no weight
                report.loaded.append(key)
    loaded = set(report.loaded)
    report.missing = [k for k in own if k not in loaded and not k.endswith("num_batches_tracked")]
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    report.coverage = sum(p.numel() for k, p in params.items() if k in loaded) / max(total, 1)
    return report


class Pretrained:
    """A weights file resolved and read once, then copied into any number of networks (the
    trials of a search share one)."""

    def __init__(self, source: str | Path | WeightsFile, network: str = "") -> None:
        self.file = source if isinstance(source, WeightsFile) else weights_file(
            parse_source(str(source), network))
        self.state = read_state_dict(self.file.path)

    def load_into(self, model: nn.Module, require_match: bool = True,
                  first_conv: str = FIRST_CONV) -> TransferReport:
        """Copy the matching tensors into ``model`` (``first_conv``: see
        ``transfer_weights``); with ``require_match``, a file that shares no tensor with it
        raises ``WeightsError``. A model over a backbone network (``model.network``: the
        network and its first conv's weight) also takes a file of that network alone: the
        official weights of a zoo backbone, or the user's own."""
        report = transfer_weights(model, self.state, self.file.source.label, first_conv)
        network = getattr(model, "network", None)
        if network is not None and not report.loaded:
            net, net_first_conv = network
            report = transfer_weights(net, self.state, self.file.source.label, net_first_conv)
        report.file, report.sha256 = str(self.file.path), self.file.sha256
        report.checked = self.file.checked
        if require_match and not report.loaded:
            raise WeightsError(f"{self.file.path}: none of its tensors matches this network by "
                               f"name and shape (its first: "
                               f"{_names([k for k, _ in report.skipped], 2)})")
        return report


def load_pretrained(model: nn.Module, source: str | Path | WeightsFile) -> TransferReport:
    """Load the weights ``source`` names (see ``weights.sources`` for the forms), or an
    already resolved ``WeightsFile``, into ``model`` and report what was loaded (see
    ``Pretrained.load_into``)."""
    genome = getattr(model, "genome", None)
    return Pretrained(source, getattr(genome, "name", "") or "").load_into(model)


def imagenet_stats(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation pretrained weights expect: ImageNet's mean and std per channel; for
    one channel their averages, for more than three the RGB values repeated."""
    if in_chans == 1:
        return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    return (tuple(IMAGENET_MEAN[i % 3] for i in range(in_chans)),
            tuple(IMAGENET_STD[i % 3] for i in range(in_chans)))


def imagenet_normalised(data: Dataset) -> Dataset:
    """``data`` normalised as pretrained weights expect (``imagenet_stats``) instead of with
    its own statistics."""
    mean, std = imagenet_stats(data.in_chans)
    return dataclasses.replace(data, mean=mean, std=std)
