"""The segmentation source ``seg:PATH``: images with class-index masks, loaded in memory.

Layouts: ``PATH/images/`` and ``PATH/masks/`` (split by seed, as a folder is), or
``PATH/{train,val,test}/{images,masks}`` (the split given; without val/, a seeded share of
train). A mask is the image's stem with a lossless image extension (PNG; a JPEG's compression
changes values), one channel of class indices; ``IGNORE_INDEX`` (255) marks pixels that are
not scored. Class names come from an optional ``PATH/classes.txt`` (UTF-8, one a line, line i
naming value i), else the values found, which must then run 0, 1, ... without a gap. Images
and masks are squashed to the resolution alike: bilinear for the image, the nearest pixel
(centres aligned) for the mask. The split's ``labels`` are the masks (uint8 [N, H, W]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import DataError
from ..config import IGNORE_INDEX, IMAGE_EXTENSIONS, SPLIT_DIRS, DataConfig
from ..dataset import Dataset, Split
from ..images import _GRAY_MODES, _decode, _is_grey, _map_safely, _probe, shown_size
from ..splits import _count
from .common import _in_memory_dataset, image_files

MASK_MODES = ("L", "P", "1", "I", "I;16")  # one channel: 8-bit, palette, 1-bit, integer
CLASSES_FILE = "classes.txt"


def _pairs(folder: Path) -> list[tuple[str, str]]:
    """(image, mask) paths of ``folder``'s ``images/`` and ``masks/``, matched by stem."""
    found = {}
    for kind in ("images", "masks"):
        sub = folder / kind
        if not sub.is_dir():
            raise DataError(f"seg: {sub} is not a folder (layout: PATH/images and PATH/masks, "
                            "or PATH/{train,val,test}/{images,masks})")
        stems: dict[str, Path] = {}
        for p in image_files(sub):
            if p.stem in stems:
                raise DataError(f"seg: {p} and {stems[p.stem]} share a stem (one file a stem)")
            stems[p.stem] = p
        found[kind] = stems
    images, masks = found["images"], found["masks"]
    if not images:
        raise DataError(f"seg: {folder / 'images'} has no images (allowed: "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    for stem, path in images.items():
        if stem not in masks:
            raise DataError(f"seg: image {path} has no mask ({folder / 'masks' / stem}.png)")
    for stem, path in masks.items():
        if stem not in images:
            raise DataError(f"seg: mask {path} has no image")
    return [(str(images[s]), str(masks[s])) for s in sorted(images)]


def _read_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    """A mask file as uint8 [H, W] class indices; its size must be the image's (w, h). A
    1-bit mask's pixels are 0 and 1."""
    with Image.open(path) as im:
        if im.format == "JPEG":
            raise DataError(f"seg: mask {path} is a JPEG, whose compression changes class "
                            "values; save masks as PNG")
        if im.mode not in MASK_MODES:
            raise DataError(f"seg: mask {path} has mode {im.mode} (one channel of class "
                            f"indices: {', '.join(MASK_MODES)})")
        if im.size != size:
            raise DataError(f"seg: mask {path} is {im.size[0]}x{im.size[1]}, its image "
                            f"{size[0]}x{size[1]} (the same size is required)")
        values = np.asarray(im)
    if values.max(initial=0) > 255:
        raise DataError(f"seg: mask {path} has value {int(values.max())} (0 to 254 are "
                        f"classes, {IGNORE_INDEX} is ignored)")
    return values.astype(np.uint8)


def _class_names(root: Path, values_each: list[np.ndarray]) -> list[str]:
    """From ``classes.txt``, checked against the mask values; else the values found
    (``values_each``: each mask's distinct values, read at its own size)."""
    found = np.unique(np.concatenate(values_each))
    values = found[found != IGNORE_INDEX]
    if values.max(initial=0) == 0:  # nothing but the background (and ignored pixels)
        hint = (f": {IGNORE_INDEX} is the ignored value, so a mask drawn as 0 and 255 needs its"
                " 255 written as 1" if IGNORE_INDEX in found else "")
        raise DataError(f"seg: every mask under {root} is class 0 (>= 2 classes are needed)"
                        f"{hint}")
    listed = root / CLASSES_FILE
    if listed.is_file():
        return _read_classes(listed)
    gaps = sorted(set(range(int(values.max()) + 1)) - set(values.tolist()))
    if gaps:
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise DataError(f"seg: the masks under {root} hold the values {shown}, and no "
                        f"{gaps[0]}: write class i as value i (0, 1, 2, ...), or name the "
                        f"classes in {listed} (line i names value i; a class may then have "
                        "no pixels)")
    return [str(v) for v in range(int(values.max()) + 1)]


def _read_classes(listed: Path) -> list[str]:
    """The class names of ``classes.txt``: line i names value i; trailing blank lines and a
    byte-order mark are allowed, a blank or repeated name is not."""
    try:
        lines = listed.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"seg: {listed} is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start}); save it as UTF-8") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"seg: {listed} line {i + 1} is blank (each line names a class: "
                            "the first value 0, the next 1, ...)")
        if name in names[:i]:
            raise DataError(f"seg: {listed} names {name!r} twice (lines "
                            f"{names.index(name) + 1} and {i + 1})")
    if len(names) < 2:
        raise DataError(f"seg: {listed} names {len(names)} class(es); >= 2 are needed")
    return names


def _check_values(values_each: list[np.ndarray], paths: list[str], names: list[str]) -> None:
    for values, path in zip(values_each, paths):
        bad = values[(values >= len(names)) & (values != IGNORE_INDEX)]
        if bad.size:
            raise DataError(f"seg: mask {path} has value {int(bad[0])}, not a class (0 to "
                            f"{len(names) - 1}: {', '.join(names)}; {IGNORE_INDEX} is ignored)")


def _load(pairs: list[tuple[str, str]], chans: int, res: int
          ) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """Images (uint8 [N, chans, res, res]), masks (uint8 [N, res, res]: the nearest pixel,
    centres aligned as the bilinear image's) and each mask's distinct values at its own size
    (a thin region that the resize drops is still checked and named)."""
    def one(pair: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        image, mask = pair
        return _decode(image, chans, res), _read_mask(mask, shown_size(image))

    loaded = _map_safely(one, pairs)
    for (image, _), result in zip(pairs, loaded):
        if isinstance(result, DataError):
            raise result
        if isinstance(result, Exception):
            raise DataError(f"seg: {image} or its mask cannot be read ({result})")
    images = torch.from_numpy(np.stack([a for a, _ in loaded]))
    masks = torch.cat([F.interpolate(torch.from_numpy(m)[None, None].float(), size=(res, res),
                                     mode="nearest-exact") for _, m in loaded])
    return images, masks[:, 0].to(torch.uint8), [np.unique(m) for _, m in loaded]


def _load_seg(cfg: DataConfig) -> Dataset:
    root = cfg.path
    if not root.is_dir():
        raise DataError(f"seg: {root} is not a folder")
    given = [s for s in SPLIT_DIRS if (root / s).is_dir()]
    if given and ("train" not in given or "test" not in given):
        raise DataError(f"seg: {root} has {' and '.join(f'{s}/' for s in given)} but no "
                        f"{'train/' if 'train' not in given else 'test/'} (a given split: "
                        "PATH/train and PATH/test, each with images/ and masks/; PATH/val or "
                        "a share of train as val)")
    groups = [_pairs(root / s) for s in given] if given else [_pairs(root)]
    pairs = [p for g in groups for p in g]
    res = cfg.image_size
    modes = _map_safely(_probe, [image for image, _ in pairs])
    for (image, _), mode in zip(pairs, modes):
        if isinstance(mode, Exception):
            raise DataError(f"seg: image {image} cannot be read ({mode})")
    chans = 1 if all(m in _GRAY_MODES for m in modes) else 3
    if len(pairs) * (chans + 1) * res * res > cfg.max_in_memory_bytes:
        raise DataError(f"seg: {root} needs {len(pairs) * (chans + 1) * res * res / 2**30:.1f} "
                        f"GiB at {res} px (max_in_memory_bytes {cfg.max_in_memory_bytes}): "
                        "a lower --resolution")
    images, masks, values_each = _load(pairs, chans, res)
    if chans == 3 and all(_is_grey(a) for a in images.numpy()):  # grey images saved as RGB
        images, chans = images[:, :1].contiguous(), 1
    names = _class_names(root, values_each)
    _check_values(values_each, [m for _, m in pairs], names)
    whole = Split(images, masks, torch.arange(len(pairs)))
    if given:
        bounds = np.cumsum([0] + [len(g) for g in groups])
        parts = dict(zip(given, (np.arange(a, b) for a, b in zip(bounds, bounds[1:]))))
        if "val" not in parts:
            train = parts["train"]
            shares = _seeded_split(cfg, len(train), root / "train", test_fraction=0.0)
            parts.update(train=train[shares[0]], val=train[shares[1]])
        split = [parts[s] for s in SPLIT_DIRS]
    else:
        split = _seeded_split(cfg, len(pairs), root)
    return _in_memory_dataset(cfg, tuple(whole.take(i) for i in split), names,
                              files=tuple(image for image, _ in pairs))


def _seeded_split(cfg: DataConfig, n: int, root: Path,
                  test_fraction: float | None = None) -> list[np.ndarray]:
    """Seeded random train/val/test positions of ``n`` pairs (``test_fraction``: the
    config's unless given)."""
    n_val = _count(cfg.val_fraction, n)
    n_test = _count(cfg.test_fraction if test_fraction is None else test_fraction, n)
    if n - n_val - n_test < 1:
        raise DataError(f"seg: {root} has {n} image(s): too few to split into train/val/test "
                        f"(needs >= {n_val + n_test + 1} with these val/test fractions)")
    order = np.random.default_rng(cfg.seed).permutation(n)
    return [np.sort(order[n_val + n_test:]), np.sort(order[n_test:n_test + n_val]),
            np.sort(order[:n_test])]
