"""The CIFAR-10/100 source: the official python-version archives, read with a safe unpickler."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO

import numpy as np
import torch

from ...download import fetch
from ...errors import DataError
from ..config import DataConfig
from ..dataset import Dataset, Split
from ..download import _safe_extract
from ..splits import _count, _stratified_split
from .common import _in_memory_dataset


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant is published and how its python-version files are laid out."""

    url: str
    md5: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str


CIFAR_SOURCES: Mapping[str, CifarSource] = MappingProxyType({
    "cifar10": CifarSource(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a", "cifar-10-python.tar.gz", "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch", "batches.meta", "labels", "label_names",
    ),
    "cifar100": CifarSource(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python.tar.gz", "cifar-100-python",
        ("train",), "test", "meta",
        "fine_labels", "fine_label_names",
    ),
})

# Everything the CIFAR pickles need: numpy array/dtype reconstruction (the module path
# differs between numpy 1 and 2, and protocol 5 uses _frombuffer) and `_codecs.encode`,
# which is how protocol 2 spells bytes when written by Python 3.
_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except plain numpy array reconstruction."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file, encoding="bytes")  # the real files were pickled by Python 2
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"refused global '{module}.{name}' in {self._path}: "
            "CIFAR files hold only plain types and numpy arrays"
        )


def _unpickle(path: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with str keys."""
    if not path.is_file():
        raise DataError(
            f"missing file {path} (the CIFAR folder is incomplete; delete it and extract again)"
        )
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # untrusted bytes can fail in many ways; report them as one
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] of one CIFAR batch file."""
    d = _unpickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: missing key 'data' or {label_key!r} (found {sorted(d)})")
    data, labels = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    shape_ok = data.ndim == 2 and data.shape[1] == 3072 and labels.shape == (len(data),)
    if data.dtype != np.uint8 or not shape_ok:
        raise DataError(
            f"{path}: 'data' must be uint8 [N, 3072] with one {label_key!r} per row "
            f"(found {data.dtype} {data.shape} and {labels.size} labels)"
        )
    if labels.size and not (0 <= labels.min() and labels.max() < num_classes):
        raise DataError(f"{path}: {label_key!r} must lie in 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(cfg: DataConfig, src: CifarSource) -> Path:
    """The extracted CIFAR folder, extracting or downloading the archive as needed."""
    root, folder, archive = cfg.root, cfg.root / src.folder, cfg.root / src.archive
    if folder.is_dir():
        return folder
    if not archive.is_file():
        if not cfg.download:
            raise DataError(
                f"{cfg.name}: no data in {root} (looked for {src.folder}/ and {src.archive}); "
                "pass --download to fetch it, or --data-dir to point at a folder that holds it"
            )
        fetch(src.url, archive, DataError, src.md5, "md5", hint=f"fetch it by hand into {root}")
    _safe_extract(archive, root)
    if not folder.is_dir():
        raise DataError(f"{archive}: does not contain the folder {src.folder}/")
    return folder


def _load_cifar(cfg: DataConfig) -> Dataset:
    src = CIFAR_SOURCES[cfg.kind]
    folder = _cifar_folder(cfg, src)
    meta_path = folder / src.meta_file
    raw_names = _unpickle(meta_path).get(src.names_key)
    if not isinstance(raw_names, list) or not raw_names:
        raise DataError(f"{meta_path}: missing the class name list {src.names_key!r}")
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw_names]
    batches = [_read_batch(folder / f, src.label_key, len(names)) for f in src.train_files]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    test_images, test_labels = _read_batch(folder / src.test_file, src.label_key, len(names))
    # val comes from the official train set; the official test set stays untouched
    n_val = _count(cfg.val_fraction, len(labels))
    train_idx, val_idx, _ = _stratified_split(labels, n_val, 0, cfg.seed, names)
    whole = Split(torch.from_numpy(images), torch.from_numpy(labels), torch.arange(len(labels)))
    test = Split(torch.from_numpy(test_images), torch.from_numpy(test_labels),
                 torch.arange(len(test_labels)))
    parts = (whole.take(train_idx), whole.take(val_idx), test)
    return _in_memory_dataset(cfg, parts, names)
