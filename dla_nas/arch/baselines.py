"""The hand-designed line that a search is compared against, each network trained by the
same recipe as the searched ones. Every baseline is a zoo genome (``dla_nas.arch.zoo``): the
plain CNNs, the CIFAR ResNets, the DLAs and narrowed versions of them."""

from __future__ import annotations

from ..errors import GenomeError
from . import zoo

# what `confirm --baselines line` trains
LINE = ("plain_cnn_8_16_32", "plain_cnn", "plain_cnn_32_64_128", "resnet8", "resnet14",
        "resnet20", "dla34_cifar_x0.25", "dla46_c_cifar")
KNOWN = ("plain_cnn, plain_cnn_<w1>_<w2>..., resnet<6n+2> (resnet8, resnet14, resnet20), "
         "a zoo name such as dla46_c_cifar, or <name>_x<m> such as dla34_cifar_x0.25")


def is_baseline(name: str) -> bool:
    try:
        return zoo.find(name) is not None
    except GenomeError:
        return False
