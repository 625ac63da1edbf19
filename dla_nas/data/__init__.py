"""Datasets for dla-nas: loading, seeded stratified splits and on-device batching.

Sources: scikit-learn's bundled 8x8 digits, CIFAR-10/100 in the official "python version"
archives, a user folder laid out as PATH/<class>/<image>, and images with segmentation masks
(``seg:PATH``).
Every dataset is split into disjoint train/val/test parts; the search only ever sees
train and val. Batches are augmented and normalised on the device, vectorised over
the batch, so training never runs a per-sample Python loop.

Modules: ``config`` (DataConfig, Augment), ``dataset`` (the split containers), ``splits``,
``images``, ``download``, ``sources`` (one module per source, and ``load_dataset``),
``loaders`` and ``report`` (what a loaded dataset holds, and the warnings it calls for).

The names below are the public API; they are imported on first use, so that ``data.config``
is read without torch.
"""

from __future__ import annotations

from ..lazy import lazy_names

PUBLIC_NAMES = {
    "AUGMENTATIONS": ".config",
    "DEFAULT_AUGMENT": ".config",
    "DEFAULT_DATA_DIR": ".config",
    "IMAGE_EXTENSIONS": ".config",
    "PAD_MODES": ".config",
    "Augment": ".config",
    "DataConfig": ".config",
    "DataError": "..errors",
    "Dataset": ".dataset",
    "FileSplit": ".dataset",
    "Split": ".dataset",
    "to_device": ".dataset",
    "DeviceLoader": ".loaders",
    "StreamLoader": ".loaders",
    "make_loader": ".loaders",
    "load_dataset": ".sources",
    "CIFAR_SOURCES": ".sources.cifar",
    "CifarSource": ".sources.cifar",
}
__all__ = sorted(PUBLIC_NAMES)
__getattr__, __dir__ = lazy_names(__name__, PUBLIC_NAMES)
