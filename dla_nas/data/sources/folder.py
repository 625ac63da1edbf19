"""The image-folder source: PATH/<class>/<image> (split by seed) or
PATH/{train,val,test}/<class>/<image> (the split given; without val/, a seeded share of train),
loaded in memory or streamed from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..config import IMAGE_EXTENSIONS, SPLIT_DIRS, DataConfig
from ..dataset import Dataset, FileSplit, Split
from ..images import (
    _GRAY_MODES,
    _channel_stats,
    _decode,
    _drop_unreadable,
    _is_grey,
    _map_safely,
    _probe,
)
from ..splits import _count, _split_by_fractions, _stratified_split, train_subset
from .common import _augment, _in_memory_dataset, image_files, subfolders

_STATS_SAMPLE = 1000  # images decoded to estimate mean/std of a streaming dataset


def _class_folders(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Image paths, their class labels, and the sorted class names under ``root``."""
    class_dirs = subfolders(root)
    if [d.name for d in class_dirs] == ["images", "masks"]:
        raise DataError(f"folder: {root} holds images/ and masks/, a segmentation folder; "
                        f"give it as seg:{root}")
    paths: list[str] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        files = [str(p) for p in image_files(d)]
        if not files:
            raise DataError(
                f"class folder {d} has no images (allowed: {', '.join(IMAGE_EXTENSIONS)})"
            )
        paths += files
        labels += [label] * len(files)
    if len(class_dirs) < 2:
        raise DataError(
            f"folder: {root} has {len(class_dirs)} class subfolder(s); >= 2 are needed "
            "(layout: PATH/<class>/<image>, or PATH/{train,val,test}/<class>/<image>)"
        )
    return paths, labels, [d.name for d in class_dirs]


def _list_images(root: Path) -> tuple[list[str], list[int], list[str], list[int] | None]:
    """Image paths, their class labels, the sorted class names, and each image's given split
    (0 train, 1 val, 2 test; None when the folder is not split: PATH/<class>/)."""
    if not root.exists():
        raise DataError(f"folder: {root} does not exist")
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a folder")
    given = [s for s in SPLIT_DIRS if (root / s).is_dir() and subfolders(root / s)]
    if not given:
        return (*_class_folders(root), None)
    if "train" not in given or "test" not in given:
        raise DataError(f"folder: {root} has {' and '.join(f'{s}/' for s in given)} but no "
                        f"{'train/' if 'train' not in given else 'test/'} (a given split: "
                        "PATH/train/<class>/ and PATH/test/<class>/, PATH/val/<class>/ or a "
                        "share of train as val)")
    paths, labels, names = _class_folders(root / "train")
    splits = [0] * len(paths)
    for s in given[1:]:
        more, their, their_names = _class_folders(root / s)
        if their_names != names:
            raise DataError(f"folder: {root / s} has the classes {', '.join(their_names)}, "
                            f"{root / 'train'} {', '.join(names)} (the same are needed)")
        paths += more
        labels += their
        splits += [SPLIT_DIRS.index(s)] * len(more)
    return paths, labels, names, splits


def _given_split(cfg: DataConfig, labels: np.ndarray, splits: np.ndarray,
                 names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test indices of a given split; without a val/ folder, a seeded stratified
    ``val_fraction`` of train is val."""
    train, val, test = (np.flatnonzero(splits == i) for i in range(3))
    if not len(val):
        keep, carved, _ = _stratified_split(labels[train], _count(cfg.val_fraction, len(train)),
                                            0, cfg.seed, names)
        train, val = train[keep], train[carved]
    for part, split in zip((train, val, test), SPLIT_DIRS):
        missing = [names[c] for c, n in enumerate(np.bincount(labels[part], minlength=len(names)))
                   if n == 0]
        if missing:
            raise DataError(f"folder: the {split} split has no readable image of class "
                            f"{missing[0]!r} (each split needs every class)")
    return train, val, test


def _load_folder(cfg: DataConfig) -> Dataset:
    root = cfg.path
    paths, labels, names, given = _list_images(root)
    if given is not None:  # the split travels with each image through the unreadable drops
        labels = [label + len(names) * split for label, split in zip(labels, given)]
    paths, labels, modes, skipped = _drop_unreadable(paths, labels, _map_safely(_probe, paths))
    chans = 1 if all(m in _GRAY_MODES for m in modes) else 3
    res = cfg.image_size
    streaming = len(paths) * chans * res * res > cfg.max_in_memory_bytes

    def decode(path: str) -> np.ndarray:
        return _decode(path, chans, res, cfg.resize)

    arrays: list[np.ndarray] = []
    if not streaming:
        paths, labels, arrays, more = _drop_unreadable(paths, labels, _map_safely(decode, paths))
        skipped += more
        if chans == 3 and all(map(_is_grey, arrays)):  # grey images saved as RGB
            arrays, chans = [a[:1] for a in arrays], 1
    label_arr = np.asarray(labels, dtype=np.int64)
    if given is not None:
        label_arr, split_arr = label_arr % len(names), label_arr // len(names)
        idx = _given_split(cfg, label_arr, split_arr, names)
    else:
        for c, n in enumerate(np.bincount(label_arr, minlength=len(names))):
            if n < 3:
                raise DataError(
                    f"class {names[c]!r} in {root} has {n} readable image(s); "
                    ">= 3 are needed (one each for train, val and test)"
                )
        idx = _split_by_fractions(cfg, label_arr, names)
    if not streaming:
        whole = Split(torch.from_numpy(np.stack(arrays)), torch.from_numpy(label_arr),
                      torch.arange(len(paths)))
        train, val, test = (whole.take(i) for i in idx)
        return _in_memory_dataset(cfg, (train, val, test), names, skipped=skipped,
                                  files=tuple(paths))
    files = FileSplit(tuple(paths), torch.from_numpy(label_arr))
    f_train, f_val, f_test = (files.take(i) for i in idx)
    f_train = f_train.take(train_subset(f_train.labels.numpy(), cfg))
    # estimate mean/std from a seeded sample rather than decoding the whole train split
    rng = np.random.default_rng([cfg.seed, 2])
    sample = rng.choice(len(f_train), min(_STATS_SAMPLE, len(f_train)), replace=False)
    decoded = [a for a in _map_safely(decode, [f_train.paths[i] for i in sample])
               if not isinstance(a, Exception)]
    if not decoded:
        raise DataError(f"folder: {root}: none of the sampled train images could be decoded")
    if chans == 3 and all(map(_is_grey, decoded)):  # judged on the sample; L of equal RGB is R
        decoded, chans = [a[:1] for a in decoded], 1
    mean, std = _channel_stats(torch.from_numpy(np.stack(decoded)))
    return Dataset(cfg.name, f_train, f_val, f_test, len(names), chans, res, mean, std,
                   _augment(cfg), names, skipped, resize=cfg.resize,
                   labels_per_class=cfg.labels_per_class)
