"""The hand-designed line that a search is compared against, each network trained by the
same recipe as the searched ones. Every baseline is a zoo genome (``dla_nas.arch.zoo``): the
plain CNNs, the CIFAR ResNets, the DLAs and narrowed versions of them."""

from __future__ import annotations

from ..errors import GenomeError, OptionError
from . import zoo
from .genome import Genome

# what `confirm --baselines line` trains
LINE = zoo.HAND_DESIGNS + ("dla34_cifar_x0.25", "dla46_c_cifar")


def baseline_genome(name: str) -> Genome:
    """The genome of a baseline name; an ``OptionError`` of ``--baselines`` that says what is
    allowed for any other name."""
    try:
        genome = zoo.find(name)
    except GenomeError as exc:
        raise OptionError(f"--baselines: {exc}") from None
    if genome is None:
        raise OptionError(f"--baselines: {name!r} is not known (allowed: "
                          f"{', '.join(zoo.names())}, {zoo.PATTERNS})")
    return genome
