"""Seeded stratified train/val/test splits and train subsamples."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .config import DataConfig


def _count(fraction: float, n: int) -> int:
    # ceil like scikit-learn; the epsilon keeps 0.2 * 1000 at 200 despite float error
    return math.ceil(fraction * n - 1e-9)


def _quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Share n samples across classes in proportion to counts (largest remainder), >= 1 each."""
    if n == 0:
        return np.zeros_like(counts)
    ideal = counts * (n / counts.sum())
    quota = np.floor(ideal).astype(np.int64)
    quota[np.argsort(quota - ideal, kind="stable")[: n - quota.sum()]] += 1
    return np.maximum(quota, 1)


def _stratified_split(
    labels: np.ndarray, n_val: int, n_test: int, seed: int, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified partition of range(len(labels)) into train/val/test indices."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=len(class_names))
    q_val, q_test = _quotas(counts, n_val), _quotas(counts, n_test)
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    for c, name in enumerate(class_names):
        if counts[c] - q_val[c] - q_test[c] < 1:
            raise DataError(
                f"class {name!r} has {counts[c]} image(s): too few to split into train/val/test "
                f"(needs >= {q_val[c] + q_test[c] + 1} with these val/test fractions)"
            )
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = (q_test[c], q_test[c] + q_val[c])
        parts[2].append(idx[: cut[0]])
        parts[1].append(idx[cut[0] : cut[1]])
        parts[0].append(idx[cut[1] :])
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test


def _split_by_fractions(
    cfg: DataConfig, labels: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test indices for a source without its own test split."""
    n = len(labels)
    n_val, n_test = _count(cfg.val_fraction, n), _count(cfg.test_fraction, n)
    return _stratified_split(labels, n_val, n_test, cfg.seed, class_names)


def train_subset(labels: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """The positions of the train split that ``cfg`` keeps: ``labels_per_class`` images of
    each class (all of a smaller one), or a ``train_fraction``; seeded by the split seed.
    The first N of a seeded order per class: 5 labels a class are among the 10."""
    if cfg.labels_per_class is None:
        return _subsample(labels, cfg.train_fraction, cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])  # own stream: independent of the split's draws
    keep = [rng.permutation(np.flatnonzero(labels == c))[:cfg.labels_per_class]
            for c in range(labels.max() + 1)]
    return np.sort(np.concatenate(keep))


def _subsample(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Seeded stratified subset of positions, keeping >= 1 sample per present class."""
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 1])  # own stream: independent of the split's draws
    counts = np.bincount(labels)
    quotas = _quotas(counts, _count(fraction, len(labels)))
    keep = [rng.choice(np.flatnonzero(labels == c), q, replace=False)
            for c, q in enumerate(quotas) if counts[c]]
    return np.sort(np.concatenate(keep))
