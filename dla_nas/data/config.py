"""Which dataset to load and how to augment it: ``DataConfig``, ``Augment`` and their constants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..checks import boolean, check_fields, integer, number, one_of, optional
from ..errors import DataError

DEFAULT_DATA_DIR = "~/.cache/dla-nas/data"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_BUILTIN = ("digits", "cifar10", "cifar100")
_NATIVE_RESOLUTION: Mapping[str, int] = MappingProxyType(
    {"digits": 8, "cifar10": 32, "cifar100": 32, "folder": 32}
)


AUGMENTATIONS = ("hflip", "vflip", "shift")
PAD_MODES = ("reflect", "zeros")
AUGMENT_RULES = {"hflip": boolean, "vflip": boolean, "shift": number(0, 0.5, high_open=True),
                 "pad_mode": one_of(PAD_MODES)}
DATA_RULES = {"resolution": optional(integer(8)),
              "train_fraction": number(0, 1, low_open=True),
              "val_fraction": number(0, 1, low_open=True, high_open=True),
              "test_fraction": number(0, 1, low_open=True, high_open=True),
              "seed": integer(0), "download": boolean, "max_in_memory_bytes": integer(0)}


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
        check_fields(self, DATA_RULES, DataError)
        if self.val_fraction + self.test_fraction >= 1:
            raise DataError(
                f"val_fraction + test_fraction: {self.val_fraction + self.test_fraction} "
                "is not allowed (< 1, train needs the rest)"
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
