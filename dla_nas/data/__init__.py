"""Datasets for dla-nas: loading, seeded stratified splits and on-device batching.

Three sources are supported: scikit-learn's bundled 8x8 digits, CIFAR-10/100 in the
official "python version" archives, and a user folder laid out as PATH/<class>/<image>.
Every dataset is split into disjoint train/val/test parts; the search only ever sees
train and val. Batches are augmented and normalised on the device, vectorised over
the batch, so training never runs a per-sample Python loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pickle
import sys
import tarfile
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import DataError

DEFAULT_DATA_DIR = "~/.cache/dla-nas/data"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_BUILTIN = ("digits", "cifar10", "cifar100")
_NATIVE_RESOLUTION: Mapping[str, int] = MappingProxyType(
    {"digits": 8, "cifar10": 32, "cifar100": 32, "folder": 32}
)
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_STATS_SAMPLE = 1000  # images decoded to estimate mean/std of a streaming dataset
_T = TypeVar("_T")



def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


AUGMENTATIONS = ("hflip", "vflip", "shift")
PAD_MODES = ("reflect", "zeros")


@dataclass(frozen=True)
class Augment:
    """Train-time augmentation, applied in batches on the device.

    ``shift`` is the largest random translation as a fraction of the resolution; the border
    it exposes is filled by ``pad_mode``: ``reflect`` (textures, photos) or ``zeros`` (digits
    on a black background)."""

    hflip: bool = False
    vflip: bool = False
    shift: float = 0.0
    pad_mode: str = "reflect"

    def __post_init__(self) -> None:
        if not (_is_number(self.shift) and 0 <= self.shift < 0.5):
            raise DataError(f"augment.shift: {self.shift} is not allowed (0 <= x < 0.5)")
        if self.pad_mode not in PAD_MODES:
            raise DataError(f"augment.pad_mode: {self.pad_mode!r} is not allowed "
                            f"(one of {', '.join(PAD_MODES)})")

    @classmethod
    def parse(cls, text: str, pad_mode: str = "reflect") -> Augment:
        """``none`` or a comma list of hflip, vflip, shift (shift: 1/8 of the resolution)."""
        names = [t.strip() for t in text.split(",") if t.strip()]
        if names == ["none"]:
            return cls()
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown or not names:
            raise DataError(f"augment: {text!r} is not allowed (none, or a comma list of "
                            f"{', '.join(AUGMENTATIONS)})")
        return cls("hflip" in names, "vflip" in names, 0.125 if "shift" in names else 0.0,
                   pad_mode)

    @classmethod
    def for_dataset(cls, text: str, dataset: str) -> Augment:
        """``parse`` with the border fill that ``dataset`` uses by default (digits and CIFAR:
        zeros; folders: reflect)."""
        kind = "folder" if dataset.startswith("folder:") else dataset
        default = DEFAULT_AUGMENT.get(kind, DEFAULT_AUGMENT["folder"])
        return cls.parse(text, pad_mode=default.pad_mode)

    def pad(self, resolution: int) -> int:
        """The largest shift in pixels at ``resolution``."""
        return round(self.shift * resolution)

    def describe(self) -> str:
        parts = [n for n in ("hflip", "vflip") if getattr(self, n)]
        if self.shift:
            parts.append(f"shift {self.shift:g} ({self.pad_mode})")
        return ", ".join(parts) or "none"


# Per source: digits are not mirrored and sit on black; CIFAR keeps its standard recipe;
# a folder of inspection or texture images gains from both flips and a reflected shift
# (measured on neu-steel, README "Small-data recipe").
DEFAULT_AUGMENT: Mapping[str, Augment] = MappingProxyType({
    "digits": Augment(shift=0.125, pad_mode="zeros"),
    "cifar10": Augment(hflip=True, shift=0.125, pad_mode="zeros"),
    "cifar100": Augment(hflip=True, shift=0.125, pad_mode="zeros"),
    "folder": Augment(hflip=True, vflip=True, shift=0.125, pad_mode="reflect"),
})


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load, at which size, and how to split it."""

    name: str
    resolution: int | None = None
    train_fraction: float = 1.0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    data_dir: str | None = None
    download: bool = False
    max_in_memory_bytes: int = 2 * 1024**3
    augment: Augment | None = None  # None: the source's default (DEFAULT_AUGMENT)

    def __post_init__(self) -> None:
        is_folder = isinstance(self.name, str) and self.name.startswith("folder:")
        if not (self.name in _BUILTIN or (is_folder and len(self.name) > len("folder:"))):
            raise DataError(
                f"dataset: {self.name!r} is not known "
                "(allowed: digits, cifar10, cifar100, folder:PATH)"
            )
        if self.resolution is not None and not (_is_int(self.resolution) and self.resolution >= 8):
            raise DataError(f"resolution: {self.resolution} is not allowed (>= 8)")
        if not (_is_number(self.train_fraction) and 0 < self.train_fraction <= 1):
            raise DataError(f"train_fraction: {self.train_fraction} is not allowed (0 < x <= 1)")
        for field in ("val_fraction", "test_fraction"):
            value = getattr(self, field)
            if not (_is_number(value) and 0 < value < 1):
                raise DataError(f"{field}: {value} is not allowed (0 < x < 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise DataError(
                f"val_fraction + test_fraction: {self.val_fraction + self.test_fraction} "
                "is not allowed (< 1, train needs the rest)"
            )
        if not (_is_int(self.seed) and self.seed >= 0):
            raise DataError(f"seed: {self.seed} is not allowed (an integer >= 0)")
        if not (_is_int(self.max_in_memory_bytes) and self.max_in_memory_bytes >= 0):
            raise DataError(
                f"max_in_memory_bytes: {self.max_in_memory_bytes} is not allowed (>= 0)"
            )

    @property
    def kind(self) -> str:
        """'digits', 'cifar10', 'cifar100' or 'folder'."""
        return "folder" if self.name.startswith("folder:") else self.name

    @property
    def image_size(self) -> int:
        """Side length of the loaded images: the resolution asked for, else the native one."""
        return self.resolution or _NATIVE_RESOLUTION[self.kind]

    @property
    def root(self) -> Path:
        """Folder that holds (or receives) the CIFAR files."""
        return Path(self.data_dir or DEFAULT_DATA_DIR).expanduser()


@dataclass
class Split:
    """In-memory images (uint8 [N, C, H, W]) and labels (int64 [N]).

    `index` holds each sample's position in its source collection (for CIFAR: the
    official train or test set), so splits can be audited for overlap.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, idx: np.ndarray) -> Split:
        """The samples at positions `idx`."""
        t = torch.from_numpy(idx)
        return Split(self.images[t], self.labels[t], None if self.index is None else self.index[t])


@dataclass
class FileSplit:
    """Image files decoded on demand (streaming mode) and their labels (int64 [N])."""

    paths: tuple[str, ...]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, idx: np.ndarray) -> FileSplit:
        """The samples at positions `idx`."""
        return FileSplit(tuple(self.paths[i] for i in idx), self.labels[torch.from_numpy(idx)])


@dataclass
class Dataset:
    """A loaded dataset: disjoint splits plus what a model and a loader need to know.

    `mean`/`std` are per channel in 0..1 units, computed on the train split only.
    """

    name: str
    train: Split | FileSplit
    val: Split | FileSplit
    test: Split | FileSplit
    num_classes: int
    in_chans: int
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    class_names: list[str]
    skipped: int = 0

    @property
    def streaming(self) -> bool:
        """True when images stay on disk and are decoded by loader workers."""
        return isinstance(self.train, FileSplit)

    def to(self, device: torch.device | str) -> Dataset:
        """This dataset with its in-memory splits moved to `device` (streaming: unchanged)."""
        if self.streaming:
            return self
        return dataclasses.replace(
            self, **{s: to_device(getattr(self, s), device) for s in ("train", "val", "test")}
        )

    def summary(self) -> str:
        """One line: split sizes, classes, resolution, channels and mode."""
        mode = "streaming" if self.streaming else "in-memory"
        skipped = f", skipped {self.skipped} unreadable" if self.skipped else ""
        return (
            f"{self.name}: train {len(self.train)} / val {len(self.val)} / test {len(self.test)}, "
            f"{self.num_classes} classes, {self.resolution}px, {self.in_chans} ch, {mode}{skipped}; "
            f"augment {self.augment.describe()}"
        )


def to_device(split: Split, device: torch.device | str) -> Split:
    """`split` with images and labels on `device` (a no-op when already there)."""
    return Split(split.images.to(device), split.labels.to(device), split.index)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load, split, resize and describe the dataset `cfg` names."""
    if cfg.kind == "digits":
        return _load_digits(cfg)
    if cfg.kind == "folder":
        return _load_folder(cfg)
    return _load_cifar(cfg)


# ---------------------------------------------------------------- splitting


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


# ---------------------------------------------------------------- shared assembly


def _resize(images: torch.Tensor, res: int) -> torch.Tensor:
    """Bilinear resize of uint8 [N, C, H, W] to res x res, in chunks to bound memory."""
    if images.shape[-2:] == (res, res):
        return images
    out = torch.empty((images.shape[0], images.shape[1], res, res), dtype=torch.uint8)
    for start in range(0, images.shape[0], 2048):
        x = images[start : start + 2048].float()
        y = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False,
                          antialias=res < images.shape[-1])
        out[start : start + 2048] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in 0..1 units."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    # a floor of one grey level keeps normalisation finite on constant channels
    std = (squares / n - mean**2).clamp_min(0).sqrt().clamp_min(1 / 255)
    return tuple(mean.tolist()), tuple(std.tolist())


def _augment(cfg: DataConfig) -> Augment:
    return cfg.augment if cfg.augment is not None else DEFAULT_AUGMENT[cfg.kind]


def _in_memory_dataset(
    cfg: DataConfig, parts: tuple[Split, Split, Split], class_names: list[str],
    skipped: int = 0,
) -> Dataset:
    """Apply train_fraction, resize, and compute train statistics."""
    train, val, test = parts
    train = train.take(_subsample(train.labels.numpy(), cfg.train_fraction, cfg.seed))
    res = cfg.image_size
    train, val, test = (Split(_resize(s.images, res), s.labels, s.index)
                         for s in (train, val, test))
    mean, std = _channel_stats(train.images)
    return Dataset(cfg.name, train, val, test, len(class_names), train.images.shape[1], res,
                   mean, std, _augment(cfg), class_names, skipped)


# ---------------------------------------------------------------- digits


def _load_digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits  # deferred: importing sklearn is slow

    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None])
    labels = bunch.target.astype(np.int64)
    names = [str(d) for d in range(10)]
    whole = Split(images, torch.from_numpy(labels), torch.arange(len(labels)))
    train, val, test = (whole.take(i) for i in _split_by_fractions(cfg, labels, names))
    return _in_memory_dataset(cfg, (train, val, test), names)


# ---------------------------------------------------------------- CIFAR


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


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch url into dest, showing progress on stderr and checking the md5."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
            total, done, shown = int(response.headers.get("Content-Length") or 0), 0, -1
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                percent = done * 100 // total if total else done >> 20
                if percent != shown:
                    unit = "%" if total else " MiB"
                    print(f"\rdownloading {url}: {percent}{unit}", end="", file=sys.stderr,
                          flush=True)
                    shown = percent
        print(file=sys.stderr)
    except OSError as e:  # URLError and socket errors are OSErrors
        part.unlink(missing_ok=True)
        raise DataError(
            f"download of {url} failed ({e}); fetch it by hand into {dest.parent}"
        ) from e
    if digest.hexdigest() != md5:
        part.unlink()
        raise DataError(
            f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}; try again"
        )
    part.replace(dest)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing absolute paths, '..', links and special files."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                name = Path(m.name)
                if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()):
                    raise DataError(
                        f"{archive}: refused member {m.name!r} (absolute path, '..', link or "
                        "special file); CIFAR archives hold only plain files"
                    )
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: not a readable tar archive ({e})") from e


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
        _download(src.url, archive, src.md5)
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


# ---------------------------------------------------------------- image folders


def _probe(path: str) -> str:
    """Pixel mode read from the image header (no decode)."""
    with Image.open(path) as im:
        return im.mode


def _decode(path: str, chans: int, res: int) -> np.ndarray:
    """One image file as uint8 [chans, res, res]: converted, then resized bilinearly."""
    with Image.open(path) as im:
        im.draft("L" if chans == 1 else "RGB", (res, res))  # JPEG: decode at a reduced scale
        im = ImageOps.exif_transpose(im)
        if im.mode in _SIXTEEN_BIT_MODES:  # Pillow's convert("L") clips 16-bit values
            scaled = (np.asarray(im, dtype=np.float32) / 257).clip(0, 255).round()
            im = Image.fromarray(scaled.astype(np.uint8))
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # avoids Pillow's palette-transparency warning
        im = im.convert("L" if chans == 1 else "RGB").resize((res, res), Image.Resampling.BILINEAR)
        arr = np.array(im, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants
    return arr[None] if chans == 1 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _is_grey(image: np.ndarray) -> bool:
    """True when the channels of a [C, H, W] image are all equal."""
    return bool((image == image[:1]).all())


def _map_safely(fn: Callable[[str], _T], paths: Sequence[str]) -> list[_T | Exception]:
    """fn over paths on a thread pool (Pillow releases the GIL); failures come back as values."""
    def call(path: str) -> _T | Exception:
        try:
            return fn(path)
        except Exception as e:  # any decoder failure means "unreadable image"
            return e

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(call, paths))


def _drop_unreadable(
    paths: list[str], labels: list[int], results: list[_T | Exception]
) -> tuple[list[str], list[int], list[_T], int]:
    """Warn about and drop the entries whose result is an exception."""
    kept_paths, kept_labels, kept, skipped = [], [], [], 0
    for path, label, result in zip(paths, labels, results):
        if isinstance(result, Exception):
            warnings.warn(f"skipping unreadable image {path}: {result}", stacklevel=4)
            skipped += 1
        else:
            kept_paths.append(path)
            kept_labels.append(label)
            kept.append(result)
    return kept_paths, kept_labels, kept, skipped


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
        return _decode(path, chans, res)

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
        return _in_memory_dataset(cfg, (train, val, test), names, skipped=skipped)
    files = FileSplit(tuple(paths), torch.from_numpy(label_arr))
    f_train, f_val, f_test = (files.take(i) for i in idx)
    f_train = f_train.take(_subsample(f_train.labels.numpy(), cfg.train_fraction, cfg.seed))
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
                   _augment(cfg), names, skipped)


# ---------------------------------------------------------------- batching


class _BatchTransform:
    """Batched on-device augmentation (random shift, flips) and normalisation of uint8
    [B, C, H, W] to float32."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], augment: Augment, pad: int,
                 generator: torch.Generator, device: torch.device, channels_last: bool) -> None:
        if not (_is_int(pad) and pad >= 0):
            raise DataError(f"pad: {pad} is not allowed (an integer >= 0)")
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1 / (255 * std_t)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.bias = -mean_t / std_t
        self.augment, self.pad, self.generator = augment, pad, generator
        self.channels_last = channels_last

    def _window(self, b: int, n: int, flip: bool, device: torch.device) -> torch.Tensor:
        """Per-sample source indices [b, n] along one axis: flipped, shifted and, for
        reflect padding, mirrored back inside 0..n-1 (zeros padding indexes a padded copy)."""
        gen = self.generator
        idx = torch.arange(n, device=device).expand(b, n)
        if flip:
            flipped = torch.rand(b, 1, generator=gen, device=device) < 0.5
            idx = torch.where(flipped, idx.flip(1), idx)
        if self.pad:
            offset = torch.randint(0, 2 * self.pad + 1, (b, 1), generator=gen, device=device)
            idx = idx + offset
            if self.augment.pad_mode == "reflect":
                if self.pad >= n:
                    raise DataError(f"pad: {self.pad} is not allowed with reflect padding of "
                                    f"{n}-px images (< {n})")
                idx = (idx - self.pad).abs()
                idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
        return idx

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        # one gather for the whole batch: per-sample row/column windows
        b, c, h, w = x.shape
        dev = x.device
        rows = self._window(b, h, self.augment.vflip, dev)
        cols = self._window(b, w, self.augment.hflip, dev)
        if self.pad and self.augment.pad_mode == "zeros":
            p = self.pad
            x = F.pad(x, (p, p, p, p))
        batch = torch.arange(b, device=dev).view(b, 1, 1, 1)
        chan = torch.arange(c, device=dev).view(1, c, 1, 1)
        return x[batch, chan, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad or self.augment.hflip or self.augment.vflip:
            x = self._augment(x)
        x = x.to(torch.float32).mul_(self.scale).add_(self.bias)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _check_batch_size(batch_size: int) -> None:
    if not (_is_int(batch_size) and batch_size >= 1):
        raise DataError(f"batch_size: {batch_size} is not allowed (an integer >= 1)")


class DeviceLoader:
    """Batches of an in-memory Split that lives on the target device; yields (x, y)."""

    mode = "in-memory"

    def __init__(self, split: Split, batch_size: int, *, mean: Sequence[float],
                 std: Sequence[float], shuffle: bool = False, augment: Augment = Augment(),
                 pad: int = 0, seed: int | torch.Generator = 0, drop_last: bool = False,
                 channels_last: bool = False) -> None:
        _check_batch_size(batch_size)
        device = split.images.device
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.generator = (seed if isinstance(seed, torch.Generator)
                          else torch.Generator(device=device).manual_seed(seed))
        self._transform = _BatchTransform(mean, std, augment, pad, self.generator, device,
                                          channels_last)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, device = len(self.split), self.split.images.device
        order = (torch.randperm(n, generator=self.generator, device=device) if self.shuffle
                 else torch.arange(n, device=device))
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self._transform(self.split.images[idx]), self.split.labels[idx]


class _ImageFiles(torch.utils.data.Dataset):
    """Decodes one file per item inside DataLoader workers; unreadable files yield None."""

    def __init__(self, split: FileSplit, chans: int, res: int) -> None:
        self.paths, self.labels, self.chans, self.res = split.paths, split.labels, chans, res

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            image = _decode(self.paths[i], self.chans, self.res)
        except Exception as e:  # a file that broke after loading: skip it, don't kill training
            warnings.warn(f"skipping unreadable image {self.paths[i]}: {e}")
            return None
        return torch.from_numpy(image), self.labels[i]


def _collate_readable(
    items: list[tuple[torch.Tensor, torch.Tensor] | None],
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack the decodable items; None when the whole batch was unreadable."""
    kept = [it for it in items if it is not None]
    if not kept:
        return None
    return torch.stack([k[0] for k in kept]), torch.stack([k[1] for k in kept])


class StreamLoader:
    """Batches of a FileSplit decoded by DataLoader workers, then augmented on the device."""

    mode = "streaming"

    def __init__(self, split: FileSplit, in_chans: int, resolution: int, batch_size: int,
                 device: torch.device | str, *, mean: Sequence[float], std: Sequence[float],
                 shuffle: bool = False, augment: Augment = Augment(), pad: int = 0,
                 seed: int = 0, drop_last: bool = False, channels_last: bool = False,
                 num_workers: int | None = None) -> None:
        _check_batch_size(batch_size)
        self.device = torch.device(device)
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        self._loader = torch.utils.data.DataLoader(
            _ImageFiles(split, in_chans, resolution), batch_size=batch_size, shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed), num_workers=workers,
            persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
            drop_last=drop_last, collate_fn=_collate_readable,
        )
        generator = torch.Generator(device=self.device).manual_seed(seed)
        self._transform = _BatchTransform(mean, std, augment, pad, generator, self.device,
                                          channels_last)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self._loader:
            if batch is None:  # every file of this batch was unreadable
                continue
            x = batch[0].to(self.device, non_blocking=True)
            yield self._transform(x), batch[1].to(self.device, non_blocking=True)


def make_loader(dataset: Dataset, split: str, batch_size: int, device: torch.device | str,
                train: bool, seed: int, channels_last: bool = False, *,
                shuffle: bool | None = None,
                num_workers: int | None = None) -> DeviceLoader | StreamLoader:
    """The loader for one split. train=True augments with ``dataset.augment``, shuffles and
    drops the last partial batch; train=False keeps every sample, unaugmented, in order
    unless ``shuffle`` (a class-mixed sample of a split sorted by class)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"split: {split!r} is not known (allowed: train, val, test)")
    part = getattr(dataset, split)
    augment = dataset.augment if train else Augment()
    pad = augment.pad(dataset.resolution)
    shuffle = train if shuffle is None else shuffle
    drop_last = train and len(part) >= batch_size  # never drop the only batch of a tiny proxy set
    if isinstance(part, FileSplit):
        return StreamLoader(part, dataset.in_chans, dataset.resolution, batch_size, device,
                            mean=dataset.mean, std=dataset.std, shuffle=shuffle, augment=augment,
                            pad=pad, seed=seed, drop_last=drop_last, channels_last=channels_last,
                            num_workers=num_workers)
    return DeviceLoader(to_device(part, device), batch_size, mean=dataset.mean, std=dataset.std,
                        shuffle=shuffle, augment=augment, pad=pad, seed=seed, drop_last=drop_last,
                        channels_last=channels_last)
