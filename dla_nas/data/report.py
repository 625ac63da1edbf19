"""What a loaded dataset holds, read before any training: images per class and split, image
sizes, modes and formats on disk (folders), and identical images that fall in train and in
val/test; and ``warnings``, the plain-language lines these figures call for."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import IMBALANCE_RATIO, imbalance
from .dataset import Dataset
from .images import _SIXTEEN_BIT_MODES, _map_safely, _probe

SPLITS = ("train", "val", "test")
# width/height outside this range (3:4 to 4:3) is visibly squashed by the square resize
SQUARE_ASPECT = (0.75, 1.33)
# a median side below resolution / this is blown up so far that the extra pixels carry
# nothing and only cost compute
UPSCALE_FACTOR = 2.0
DUPLICATE_EXAMPLES = 3  # example pairs kept: enough to find the files, short enough to print
# 16-bit images whose values stay below this use 14 bits or fewer: read as value / 257 they keep
# at most 64 grey levels (a 12-bit camera's, 0-4095, keeps 16)
FEW_BITS = 2**14


@dataclass(frozen=True)
class FileFacts:
    """One image file as its header and bytes tell it, without decoding the pixels."""

    width: int
    height: int
    mode: str
    format: str
    digest: str
    peak: float | None = None  # the largest value, for float and 16-bit images only


@dataclass(frozen=True)
class SizeStats:
    """Image sizes on disk: (min, median, max) of width and height, (min, max) of w/h."""

    width: tuple[int, int, int]
    height: tuple[int, int, int]
    aspect: tuple[float, float]


@dataclass(frozen=True)
class DataReport:
    """A dataset's figures; ``sizes``, ``modes`` and ``formats`` are known for folders only."""

    name: str
    resolution: int
    channels: int
    class_names: tuple[str, ...]
    # per split (SPLITS order), images per class (masks: images that hold the class)
    counts: tuple[tuple[int, ...], ...]
    leaks: int = 0  # val/test images whose content also appears in train
    leak_examples: tuple[str, ...] = ()
    sizes: SizeStats | None = None
    modes: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    resize: str = "squash"
    augment: str = "none"  # the training augmentation (``Augment.describe``)
    dense: bool = False  # masks: a class a pixel
    skipped: int = 0  # image files that could not be read, left out
    float_peak: float | None = None  # the largest value of the float images (mode F), if any
    sixteen_bit_peak: int | None = None  # ... of the 16-bit images, if any

    @property
    def totals(self) -> tuple[int, ...]:
        """Images per class over all splits."""
        return tuple(int(n) for n in np.sum(self.counts, axis=0))

    @property
    def imbalance(self) -> float:
        """Largest class over smallest class, over all splits."""
        return imbalance(self.totals)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts, for JSON and YAML."""
        per_class = {split: dict(zip(self.class_names, c)) for split, c in zip(SPLITS, self.counts)}
        out: dict[str, Any] = {
            "name": self.name, "resolution": self.resolution, "channels": self.channels,
            "resize": self.resize, "augment": self.augment, "task": _task(self.dense),
            "counts": {**per_class, "total": dict(zip(self.class_names, self.totals))},
            "imbalance_ratio": round(self.imbalance, 2), "unreadable_skipped": self.skipped,
            "duplicates_across_splits": {"count": self.leaks,
                                         "examples": list(self.leak_examples)},
        }
        if self.sizes is not None:
            s = self.sizes
            out["sizes"] = {"width": list(s.width), "height": list(s.height),
                            "aspect": list(s.aspect)}
            out["modes"], out["formats"] = list(self.modes), list(self.formats)
        for key in ("float_peak", "sixteen_bit_peak"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def data_report(data: Dataset) -> DataReport:
    """The report of a loaded dataset: a folder's files are read again for their headers and
    bytes (no pixel decoding); embedded data is hashed as the arrays it was loaded as."""
    counts = tuple(_class_counts(getattr(data, s).labels.cpu(), data.num_classes)
                   for s in SPLITS)
    base = DataReport(data.name, data.resolution, data.in_chans, tuple(data.class_names), counts,
                      resize=data.resize, augment=data.augment.describe(), dense=data.dense,
                      skipped=data.skipped)
    paths = {s: data.split_files(s) for s in SPLITS}
    if not paths["train"]:
        names = {s: [f"{s} #{i}" for i in range(len(getattr(data, s)))] for s in SPLITS}
        leaks, examples = _leaks(names, {s: _array_digests(data, s) for s in SPLITS})
        return replace(base, leaks=leaks, leak_examples=examples)
    facts = {s: [f for f in _map_safely(_file_facts, p) if isinstance(f, FileFacts)]
             for s, p in paths.items()}
    everything = [f for s in SPLITS for f in facts[s]]
    leaks, examples = _leaks(paths, {s: [f.digest for f in facts[s]] for s in SPLITS})
    float_peak, sixteen_bit_peak = _peaks(everything)
    return replace(base, leaks=leaks, leak_examples=examples, sizes=_size_stats(everything),
                   modes=tuple(sorted({f.mode for f in everything})),
                   formats=tuple(sorted({f.format for f in everything})),
                   float_peak=float_peak, sixteen_bit_peak=sixteen_bit_peak)


def _peaks(facts: Sequence[FileFacts]) -> tuple[float | None, int | None]:
    """The largest value of the float images and of the 16-bit ones among ``facts``."""
    floats = [f.peak for f in facts if f.mode == "F" and f.peak is not None]
    deep = [f.peak for f in facts if f.mode in _SIXTEEN_BIT_MODES and f.peak is not None]
    return (max(floats) if floats else None), (int(max(deep)) if deep else None)


def depth_warnings(paths: Sequence[str]) -> list[str]:
    """What ``warnings`` says of float and sparse 16-bit images, for image files outside a
    dataset (``predict``'s): headers are read for all, pixels only of those two kinds."""
    deep = [p for p, m in zip(paths, _map_safely(_probe, paths))
            if m == "F" or m in _SIXTEEN_BIT_MODES]
    facts = [f for f in _map_safely(_file_facts, deep) if isinstance(f, FileFacts)]
    return list(_depth_lines(*_peaks(facts)))


def _task(dense: bool) -> str:
    return "dense" if dense else "classify"


def _class_counts(labels: torch.Tensor, num_classes: int) -> tuple[int, ...]:
    """Images per class; for masks (N, H, W), the images in which each class appears."""
    if labels.dim() == 3:
        present = torch.zeros(len(labels), num_classes + 1, dtype=torch.bool)
        present.scatter_(1, labels.flatten(1).long().clamp(max=num_classes), True)
        return tuple(int(n) for n in present[:, :num_classes].sum(0))
    return tuple(int(n) for n in np.bincount(labels.numpy(), minlength=num_classes))


def _file_facts(path: str) -> FileFacts:
    """Size, mode and format from the header, and a digest of the bytes: one read per file;
    float and 16-bit images (rare) are decoded for their largest value."""
    with open(path, "rb") as f:
        raw = f.read()
    with Image.open(io.BytesIO(raw)) as im:  # opening reads the header only
        peak = None
        if im.mode == "F" or im.mode in _SIXTEEN_BIT_MODES:
            values = np.asarray(im, dtype=np.float64)
            peak = float(np.nanmax(values)) if np.isfinite(values).any() else None
        return FileFacts(im.width, im.height, im.mode, im.format or "?",
                         hashlib.blake2b(raw, digest_size=16).hexdigest(), peak)


def _array_digests(data: Dataset, split: str) -> list[str]:
    images = getattr(data, split).images.cpu().numpy()
    return [hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest() for a in images]


def _leaks(names: dict[str, Sequence[str]],
           digests: dict[str, Sequence[str]]) -> tuple[int, tuple[str, ...]]:
    """How many val/test items have the content of a train item, and a few examples."""
    train = dict(zip(digests["train"], names["train"]))
    pairs = [f"{name} = {train[d]}" for s in ("val", "test")
             for name, d in zip(names[s], digests[s]) if d in train]
    return len(pairs), tuple(pairs[:DUPLICATE_EXAMPLES])


def _size_stats(facts: Sequence[FileFacts]) -> SizeStats | None:
    if not facts:
        return None
    w = np.array([f.width for f in facts])
    h = np.array([f.height for f in facts])
    aspect = w / h
    return SizeStats(_spread(w), _spread(h),
                     (round(float(aspect.min()), 2), round(float(aspect.max()), 2)))


def _spread(values: np.ndarray) -> tuple[int, int, int]:
    return int(values.min()), int(np.median(values)), int(values.max())


def augment_note(report: DataReport) -> str:
    """Which training augmentation is used, and why."""
    if "flip" in report.augment:
        return (f"augmentation: {report.augment}: flips assume a flipped image shows the same "
                "class (true of textures); --augment shift leaves them out")
    return (f"augmentation: {report.augment}, no flip: a flip can change what an image shows "
            "(a 9 into a 6); --augment textures adds both flips for surfaces that look the "
            "same flipped")


def warnings(report: DataReport, balanced: bool | None = None) -> list[str]:
    """One plain line per problem found, each naming what addresses it; ``balanced``: whether
    training draws class-balanced batches (None: the default, ``--sampling auto``)."""
    return list(_warning_lines(report, balanced))


def _warning_lines(r: DataReport, balanced: bool | None) -> Iterator[str]:
    totals = dict(zip(r.class_names, r.totals))
    big, small = max(totals, key=totals.get), min(totals, key=totals.get)
    if r.imbalance > IMBALANCE_RATIO and not r.dense:  # masks: no image is one class
        head = f"classes are imbalanced ({big} {totals[big]}, {small} {totals[small]}: " \
               f"{r.imbalance:.0f}x)"
        yield (f"{head}: batches are class-balanced (--sampling auto; uniform turns it off) "
               f"and a search ranks by balanced accuracy; plain accuracy flatters a model that "
               f"answers {big}" if balanced is not False else
               f"{head}: batches are not class-balanced (--sampling balanced would be); plain "
               f"accuracy flatters a model that answers {big}: read balanced accuracy")
    s = r.sizes
    if s is not None and (s.aspect[0] < SQUARE_ASPECT[0] or s.aspect[1] > SQUARE_ASPECT[1]):
        shape = f"their aspect ratios (w/h) run from {s.aspect[0]:g} to {s.aspect[1]:g}"
        yield (f"images are squashed to {r.resolution}x{r.resolution}: {shape}; --resize "
               "pad keeps their shape" if r.resize == "squash" else
               f"images are made square by {r.resize}: {shape}")
    if s is not None and min(s.width[1], s.height[1]) * UPSCALE_FACTOR < r.resolution:
        side = min(s.width[1], s.height[1])
        yield (f"images are upscaled: their median side is {side} px, against "
               f"--resolution {r.resolution}; a --resolution near {side} costs less and "
               "loses nothing")
    yield from _depth_lines(r.float_peak, r.sixteen_bit_peak)
    if r.leaks:
        yield (f"{r.leaks} images in val/test also appear in train (e.g. "
               f"{r.leak_examples[0]}): the scores will flatter; remove the copies")


def _depth_lines(float_peak: float | None, sixteen_bit_peak: int | None) -> Iterator[str]:
    if float_peak is not None:
        yield (f"images are floating point (mode F, values up to {float_peak:g}): they are "
               "read as grey levels 0-255, values outside clipped"
               + (", so these read as black" if float_peak <= 1 else "")
               + "; save them as 8- or 16-bit images")
    if sixteen_bit_peak is not None and sixteen_bit_peak < FEW_BITS:
        bits = max(1, sixteen_bit_peak.bit_length())
        yield (f"16-bit images use {bits} bits or fewer (values up to {sixteen_bit_peak}): "
               "read as value / 257 (the full 16-bit range) they keep "
               f"{sixteen_bit_peak // 257 + 1} grey levels; scale them to the full range "
               f"(x{2 ** (16 - bits)}) or save them as 8-bit images")
