"""What every source shares: a loaded dataset assembled from its splits, and its augmentation."""

from __future__ import annotations

import torch

from ..config import DEFAULT_AUGMENT, Augment, DataConfig
from ..dataset import Dataset, Split
from ..images import _channel_stats, _resize
from ..splits import train_subset


def _augment(cfg: DataConfig) -> Augment:
    return cfg.augment if cfg.augment is not None else DEFAULT_AUGMENT[cfg.kind]


def _in_memory_dataset(
    cfg: DataConfig, parts: tuple[Split, Split, Split], class_names: list[str],
    skipped: int = 0, files: tuple[str, ...] = (),
) -> Dataset:
    """Apply train_fraction, resize, and compute train statistics; ``files``: the images'
    paths, by ``Split.index``, for a folder. Masks (dense labels) are one stratum."""
    train, val, test = parts
    strata = train.labels if train.labels.dim() == 1 else torch.zeros(len(train), dtype=torch.int64)
    train = train.take(train_subset(strata.numpy(), cfg))
    res = cfg.image_size
    train, val, test = (Split(_resize(s.images, res), s.labels, s.index)
                         for s in (train, val, test))
    mean, std = _channel_stats(train.images)
    return Dataset(cfg.name, train, val, test, len(class_names), train.images.shape[1], res,
                   mean, std, _augment(cfg), class_names, skipped, files, cfg.resize,
                   cfg.labels_per_class)
