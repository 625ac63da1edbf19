"""Which dataset to load and how to augment it: ``DataConfig``, ``Augment`` and their constants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..checks import boolean, check_fields, integer, number, one_of, optional
from ..errors import DataError

DEFAULT_DATA_DIR = "~/.cache/dla-nas/data"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# a folder's or a seg folder's given split: PATH/train, PATH/val (optional), PATH/test
SPLIT_DIRS = ("train", "val", "test")
_BUILTIN = ("digits", "cifar10", "cifar100")
# sources given as KIND:PATH: a folder of class subfolders, and images with segmentation masks
PATH_KINDS = ("folder", "seg")
_NATIVE_RESOLUTION: Mapping[str, int] = MappingProxyType(
    {"digits": 8, "cifar10": 32, "cifar100": 32, "folder": 32, "seg": 64}
)
# a mask pixel of this value is not scored (an unlabelled or uncertain region)
IGNORE_INDEX = 255


AUGMENTATIONS = ("hflip", "vflip", "shift")
# named augmentations, for users who think of their images rather than of transforms: a
# texture or a surface reads the same mirrored either way; a photo of objects reads the same
# mirrored left-right; a digit, a glyph or an oriented part reads the same under neither
PRESETS: Mapping[str, str] = MappingProxyType({
    "textures": "hflip,vflip,shift", "objects": "hflip,shift", "shift": "shift", "none": "none"})
# how a training batch is drawn: ``balanced`` gives every class the same share (images of a
# small class repeat within an epoch), ``uniform`` every image the same chance, ``auto``
# balanced when the largest train class outnumbers the smallest more than IMBALANCE_RATIO
SAMPLINGS = ("auto", "balanced", "uniform")
# above this largest/smallest class ratio, plain accuracy mostly measures the large class
# (the magnetic-tile set, 952 against 32, scored well by answering "Free" every time)
IMBALANCE_RATIO = 3.0
# how an image that is not square reaches resolution x resolution: ``squash`` stretches it,
# ``pad`` fits its longer side and mirrors the image into the rest (the aspect ratio, and
# with it the shape of a part, is kept), ``crop`` fits its shorter side and keeps the centre
RESIZE_MODES = ("squash", "pad", "crop")
PAD_MODES = ("reflect", "zeros")
AUGMENT_RULES = {"hflip": boolean, "vflip": boolean, "shift": number(0, 0.5, high_open=True),
                 "pad_mode": one_of(PAD_MODES)}
DATA_RULES = {"resolution": optional(integer(8)),
              "train_fraction": number(0, 1, low_open=True),
              "val_fraction": number(0, 1, low_open=True, high_open=True),
              "test_fraction": number(0, 1, low_open=True, high_open=True),
              "seed": integer(0), "download": boolean, "max_in_memory_bytes": integer(0),
              "resize": one_of(RESIZE_MODES), "labels_per_class": optional(integer(1))}


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
        check_fields(self, AUGMENT_RULES, DataError, prefix="augment.")

    @classmethod
    def parse(cls, text: str, pad_mode: str = "reflect") -> Augment:
        """A preset (textures, objects, shift, none) or a comma list of hflip, vflip, shift
        (shift: 1/8 of the resolution)."""
        names = [t.strip() for t in PRESETS.get(text.strip(), text).split(",") if t.strip()]
        if names == ["none"]:
            return cls()
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown or not names:
            raise DataError(f"augment: {text!r} is not allowed ({', '.join(PRESETS)}, or a "
                            f"comma list of {', '.join(AUGMENTATIONS)})")
        return cls("hflip" in names, "vflip" in names, 0.125 if "shift" in names else 0.0,
                   pad_mode)

    @classmethod
    def for_dataset(cls, text: str, dataset: str) -> Augment:
        """``parse`` with the border fill that ``dataset`` uses by default (digits and CIFAR:
        zeros; folders: reflect)."""
        kind = dataset.partition(":")[0]
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
# a folder may hold anything, so no flip is assumed safe there: a reflected shift only. On
# neu-steel, whose textures any flip keeps, flips added nothing (0.980 with, 0.982 without, 3
# seeds); on a folder of digits they turn a 9 into a 6 (docs/reports/unseen-data.md).
DEFAULT_AUGMENT: Mapping[str, Augment] = MappingProxyType({
    "digits": Augment(shift=0.125, pad_mode="zeros"),
    "cifar10": Augment(hflip=True, shift=0.125, pad_mode="zeros"),
    "cifar100": Augment(hflip=True, shift=0.125, pad_mode="zeros"),
    "folder": Augment(shift=0.125, pad_mode="reflect"),
    "seg": Augment(shift=0.125, pad_mode="reflect"),  # as a folder: no flip assumed safe
})


def imbalance(counts: Sequence[int]) -> float:
    """Largest class over smallest (classes with no image left out)."""
    present = [int(n) for n in counts if n > 0]
    return max(present) / min(present) if present else 1.0


def balanced_sampling(sampling: str, counts: Sequence[int]) -> bool:
    """Whether ``sampling`` (one of SAMPLINGS) draws class-balanced batches from a train
    split with these images per class."""
    if sampling not in SAMPLINGS:
        raise DataError(f"sampling: {sampling!r} is not allowed ({', '.join(SAMPLINGS)})")
    return sampling == "balanced" or (sampling == "auto" and imbalance(counts) > IMBALANCE_RATIO)


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
    resize: str = "squash"  # RESIZE_MODES: how a folder's non-square images become square
    # few labels: a seeded, stratified subset of the train split with at most this many
    # images per class (val and test unchanged); instead of train_fraction
    labels_per_class: int | None = None

    def __post_init__(self) -> None:
        kind, colon, path = self.name.partition(":") if isinstance(self.name, str) else ("",) * 3
        if not (self.name in _BUILTIN or (kind in PATH_KINDS and colon and path)):
            raise DataError(
                f"dataset: {self.name!r} is not known "
                "(allowed: digits, cifar10, cifar100, folder:PATH, seg:PATH)"
            )
        check_fields(self, DATA_RULES, DataError)
        if self.kind == "seg" and self.labels_per_class is not None:
            raise DataError("labels_per_class: not allowed with seg:PATH data (an image holds "
                            "several classes; train_fraction takes a subset)")
        if self.kind == "seg" and self.resize != "squash":
            raise DataError(f"resize: {self.resize!r} is not allowed with seg:PATH data "
                            "(squash: image and mask are resized alike)")
        if self.labels_per_class is not None and self.train_fraction != 1:
            raise DataError("labels_per_class and train_fraction: give one of them (both "
                            "choose a subset of the train split)")
        if self.val_fraction + self.test_fraction >= 1:
            raise DataError(
                f"val_fraction + test_fraction: {self.val_fraction + self.test_fraction} "
                "is not allowed (< 1, train needs the rest)"
            )

    @property
    def kind(self) -> str:
        """'digits', 'cifar10', 'cifar100', 'folder' or 'seg'."""
        return self.name.partition(":")[0]

    @property
    def image_size(self) -> int:
        """Side length of the loaded images: the resolution asked for, else the native one."""
        return self.resolution or _NATIVE_RESOLUTION[self.kind]

    @property
    def root(self) -> Path:
        """Folder that holds (or receives) the CIFAR files."""
        return _expanded(self.data_dir or DEFAULT_DATA_DIR, "--data-dir")

    @property
    def path(self) -> Path:
        """A ``folder:`` or ``seg:`` source's PATH."""
        return _expanded(self.name.partition(":")[2], self.kind)


def _expanded(text: str, field: str) -> Path:
    """``text`` as a path, ``~`` and ``~user`` expanded; one that cannot be is a DataError."""
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user of no such user, or no home directory
        raise DataError(f"{field}: {text}: {exc}") from None
