"""The source of scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..dataset import Dataset, Split
from ..splits import _split_by_fractions
from .common import _in_memory_dataset


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images (8x8, values 0-16) and labels of ``sklearn.datasets.load_digits``, read
    from the CSV file scikit-learn installs, without importing scikit-learn: its import takes
    about a second, which every process that loads the digits paid (each search worker); by
    ``load_digits`` itself where that file is not found."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    roots = spec.submodule_search_locations if spec is not None else None
    path = Path(roots[0], "datasets", "data", "digits.csv.gz") if roots else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def _load_digits(cfg: DataConfig) -> Dataset:
    pixels, target = digits_arrays()
    images = torch.from_numpy(np.rint(pixels * (255 / 16)).astype(np.uint8)[:, None])
    labels = target.astype(np.int64)
    names = [str(d) for d in range(10)]
    whole = Split(images, torch.from_numpy(labels), torch.arange(len(labels)))
    train, val, test = (whole.take(i) for i in _split_by_fractions(cfg, labels, names))
    return _in_memory_dataset(cfg, (train, val, test), names)
