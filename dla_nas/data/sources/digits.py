"""The source of scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DataConfig
from ..dataset import Dataset, Split
from ..splits import _split_by_fractions
from .common import _in_memory_dataset


def _load_digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits  # deferred: importing sklearn is slow

    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None])
    labels = bunch.target.astype(np.int64)
    names = [str(d) for d in range(10)]
    whole = Split(images, torch.from_numpy(labels), torch.arange(len(labels)))
    train, val, test = (whole.take(i) for i in _split_by_fractions(cfg, labels, names))
    return _in_memory_dataset(cfg, (train, val, test), names)
