"""Image decoding, probing and resizing, and the per-channel statistics of image batches."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_T = TypeVar("_T")


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


def _probe(path: str) -> str:
    """Pixel mode read from the image header (no decode)."""
    with Image.open(path) as im:
        return im.mode


def _fit(im: Image.Image, res: int, resize: str) -> np.ndarray:
    """``im`` as a res x res array (H, W[, C]) by ``resize`` (config.RESIZE_MODES)."""
    w, h = im.size
    if resize == "squash" or w == h:
        return np.array(im.resize((res, res), Image.Resampling.BILINEAR), dtype=np.uint8)
    scale = (min if resize == "pad" else max)(res / w, res / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    arr = np.array(im.resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
    if resize == "crop":
        top, left = (size[1] - res) // 2, (size[0] - res) // 2
        return np.ascontiguousarray(arr[top : top + res, left : left + res])
    top, left = (res - size[1]) // 2, (res - size[0]) // 2
    edges = ((top, res - size[1] - top), (left, res - size[0] - left)) + ((0, 0),) * (arr.ndim - 2)
    return np.pad(arr, edges, mode="symmetric")  # mirrored: no edge a network could key on


def _decode(path: str, chans: int, res: int, resize: str = "squash") -> np.ndarray:
    """One image file as uint8 [chans, res, res]: converted, then resized bilinearly by
    ``resize`` (squash, pad or crop)."""
    with Image.open(path) as im:
        im.draft("L" if chans == 1 else "RGB", (res, res))  # JPEG: decode at a reduced scale
        im = ImageOps.exif_transpose(im)
        if im.mode in _SIXTEEN_BIT_MODES:  # Pillow's convert("L") clips 16-bit values
            scaled = (np.asarray(im, dtype=np.float32) / 257).clip(0, 255).round()
            im = Image.fromarray(scaled.astype(np.uint8))
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # avoids Pillow's palette-transparency warning
        arr = _fit(im.convert("L" if chans == 1 else "RGB"), res, resize)  # a writable copy
    return arr[None] if chans == 1 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def shown_size(path: str) -> tuple[int, int]:
    """(w, h) of an image file as it is shown, after its EXIF orientation (which ``_decode``
    applies), from the header alone."""
    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


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
