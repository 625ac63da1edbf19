"""Dataset sources: the loader of each dataset kind, and ``load_dataset``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from ..config import DataConfig
from ..dataset import Dataset
from .cifar import _load_cifar
from .digits import _load_digits
from .folder import _load_folder
from .segmentation import _load_seg

# the loader of each DataConfig.kind
LOADERS: Mapping[str, Callable[[DataConfig], Dataset]] = MappingProxyType({
    "digits": _load_digits,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "folder": _load_folder,
    "seg": _load_seg,
})


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load, split, resize and describe the dataset `cfg` names."""
    return LOADERS[cfg.kind](cfg)
