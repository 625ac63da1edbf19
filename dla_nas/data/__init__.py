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
"""

from __future__ import annotations

from ..errors import DataError
from .config import (
    AUGMENTATIONS,
    DEFAULT_AUGMENT,
    DEFAULT_DATA_DIR,
    IMAGE_EXTENSIONS,
    PAD_MODES,
    Augment,
    DataConfig,
)
from .dataset import Dataset, FileSplit, Split, to_device
from .loaders import DeviceLoader, StreamLoader, make_loader
from .sources import load_dataset
from .sources.cifar import CIFAR_SOURCES, CifarSource

__all__ = ["AUGMENTATIONS", "CIFAR_SOURCES", "DEFAULT_AUGMENT", "DEFAULT_DATA_DIR",
           "IMAGE_EXTENSIONS", "PAD_MODES", "Augment", "CifarSource", "DataConfig", "DataError",
           "Dataset", "DeviceLoader", "FileSplit", "Split", "StreamLoader", "load_dataset",
           "make_loader", "to_device"]
