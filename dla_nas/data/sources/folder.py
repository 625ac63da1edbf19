"""The image-folder source: PATH/<class>/<image>, loaded in memory or streamed from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..config import IMAGE_EXTENSIONS, DataConfig
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
from ..splits import _split_by_fractions, train_subset
from .common import _augment, _in_memory_dataset

_STATS_SAMPLE = 1000  # images decoded to estimate mean/std of a streaming dataset


def _list_images(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Image paths, their class labels, and the sorted class names under root."""
    if not root.exists():
        raise DataError(f"folder: {root} does not exist")
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        files = sorted(str(p) for p in d.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(
                f"class folder {d} has no images (allowed: {', '.join(IMAGE_EXTENSIONS)})"
            )
        paths += files
        labels += [label] * len(files)
    if len(class_dirs) < 2:
        raise DataError(
            f"folder: {root} has {len(class_dirs)} class subfolder(s); >= 2 are needed "
            "(layout: PATH/<class>/<image>)"
        )
    return paths, labels, [d.name for d in class_dirs]


def _load_folder(cfg: DataConfig) -> Dataset:
    root = Path(cfg.name[len("folder:") :]).expanduser()
    paths, labels, names = _list_images(root)
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
