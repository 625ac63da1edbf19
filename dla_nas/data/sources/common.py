"""What every source shares: a loaded dataset assembled from its splits, and its augmentation."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import torch

from ..config import DEFAULT_AUGMENT, IMAGE_EXTENSIONS, Augment, DataConfig
from ..dataset import Dataset, Split
from ..images import _channel_stats, _resize
from ..splits import train_subset

# the litter of archive tools and file browsers, never data
JUNK_DIRS = frozenset({"__MACOSX"})
JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted (hidden ones and ``JUNK_DIRS`` left out)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in JUNK_DIRS)


def image_files(folder: Path) -> list[Path]:
    """The image files (``IMAGE_EXTENSIONS``) directly in ``folder``, sorted; hidden files
    (a dot first: ``.DS_Store``, macOS's ``._`` copies) left out. What else it holds, files of
    other kinds and subfolders, is named in a warning: their images are not read."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS)
    others = Counter(p.suffix.lower() or p.name for p in files
                     if p.suffix.lower() not in IMAGE_EXTENSIONS
                     and p.name.lower() not in JUNK_FILES)
    if others:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(others.items()))
        warnings.warn(f"{folder}: {sum(others.values())} file(s) not read, not of an image "
                      f"type ({kinds}; allowed: {', '.join(IMAGE_EXTENSIONS)})", stacklevel=2)
    if images and (subs := subfolders(folder)):
        warnings.warn(f"{folder}: subfolder(s) {', '.join(p.name for p in subs)} not read "
                      "(images sit directly in their folder)", stacklevel=2)
    return images


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
