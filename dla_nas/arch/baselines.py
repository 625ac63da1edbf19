"""The hand-designed line that a search is compared against, each network trained by the
same recipe as the searched ones. A classifier baseline is a zoo genome (``dla_nas.arch.zoo``):
the plain CNNs, the CIFAR ResNets, the DLAs and narrowed versions of them; a dense one a
U-Net (``dla_nas.arch.unet``), as a backbone genome."""

from __future__ import annotations

from ..errors import GenomeError, OptionError
from . import zoo
from .backbone_genome import AnyGenome, BackboneGenome
from .unet import UNET_PATTERN, unet_widths

# what `confirm --baselines line` trains: for a classifier, and for a dense task (the
# standard U-Net and two narrowed ones)
LINE = zoo.HAND_DESIGNS + ("dla34_cifar_x0.25", "dla46_c_cifar")
DENSE_LINE = ("unet_8_16_32_64_128", "unet_16_32_64_128_256", "unet")


def baseline_genome(name: str) -> AnyGenome:
    """The genome of a baseline name; an ``OptionError`` of ``--baselines`` that says what is
    allowed for any other name."""
    try:
        if unet_widths(name):
            return BackboneGenome(name, task="dense").validate()
        genome = zoo.find(name)
    except GenomeError as exc:
        raise OptionError(f"--baselines: {exc}") from None
    if genome is None:
        raise OptionError(f"--baselines: {name!r} is not known (allowed: "
                          f"{', '.join(zoo.names())}, {zoo.PATTERNS}, {UNET_PATTERN})")
    return genome


def is_dense(genome: AnyGenome) -> bool:
    """Whether a genome predicts a class a pixel (a backbone with ``task: dense``, a U-Net)."""
    return getattr(genome, "task", "classify") == "dense"


def check_baseline_task(name: str, genome: AnyGenome, dense: bool) -> None:
    """An ``OptionError`` of ``--baselines`` when the hand design ``name`` is not of the
    data's task (``dense``: masks), before anything trains."""
    if is_dense(genome) != dense:
        kind, need = ("a classifier", "dense networks") if dense else ("dense", "classifiers")
        line = ", ".join(DENSE_LINE if dense else LINE[:3])
        raise OptionError(f"--baselines: {name} is {kind}; the run's data need {need} (such "
                          f"as {line})")
