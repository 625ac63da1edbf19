"""Batching: on-device (``DeviceLoader``) and streaming (``StreamLoader``) loaders, and
``make_loader``."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..checks import check, integer
from ..errors import DataError
from .config import IGNORE_INDEX, Augment
from .dataset import Dataset, FileSplit, Split, to_device
from .images import _decode


class _BatchTransform:
    """Batched on-device augmentation (random shift, flips) and normalisation of uint8
    [B, C, H, W] to float32; masks (uint8 [B, H, W], a dense task's labels) move with their
    images, pixel for pixel, and become int64 (a zero border is ``IGNORE_INDEX``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], augment: Augment, pad: int,
                 generator: torch.Generator, device: torch.device, channels_last: bool) -> None:
        check("pad", pad, integer(0), DataError)
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

    def _augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one gather for the whole batch: per-sample row/column windows
        b, c, h, w = x.shape
        dev = x.device
        rows = self._window(b, h, self.augment.vflip, dev)
        cols = self._window(b, w, self.augment.hflip, dev)
        dense = y.dim() == 3
        if self.pad and self.augment.pad_mode == "zeros":
            p = self.pad
            x = F.pad(x, (p, p, p, p))
            y = F.pad(y, (p, p, p, p), value=IGNORE_INDEX) if dense else y
        batch = torch.arange(b, device=dev).view(b, 1, 1, 1)
        chan = torch.arange(c, device=dev).view(1, c, 1, 1)
        rows, cols = rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)
        if dense:
            y = y[batch[:, 0], rows[:, 0], cols[:, 0]]
        return x[batch, chan, rows, cols], y

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pad or self.augment.hflip or self.augment.vflip:
            x, y = self._augment(x, y)
        return self.normalise(x), (y.long() if y.dim() == 3 else y)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 ``(x / 255 - mean) / std`` (in the memory format used)."""
        x = x.to(torch.float32).mul_(self.scale).add_(self.bias)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _check_batch_size(batch_size: int) -> None:
    check("batch_size", batch_size, integer(1), DataError)


def class_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample draw weights, 1 / the size of the sample's class: every class is drawn
    equally often."""
    counts = torch.bincount(labels)
    return 1.0 / counts[labels].double()


class DeviceLoader:
    """Batches of an in-memory Split that lives on the target device; yields (x, y).
    ``balanced``: each epoch draws len(split) samples with replacement, every class with the
    same chance (``class_balanced_weights``), instead of a permutation."""

    mode = "in-memory"

    def __init__(self, split: Split, batch_size: int, *, mean: Sequence[float],
                 std: Sequence[float], shuffle: bool = False, augment: Augment = Augment(),
                 pad: int = 0, seed: int | torch.Generator = 0, drop_last: bool = False,
                 channels_last: bool = False, balanced: bool = False) -> None:
        _check_batch_size(batch_size)
        device = split.images.device
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.weights = class_balanced_weights(split.labels) if balanced else None
        self.generator = (seed if isinstance(seed, torch.Generator)
                          else torch.Generator(device=device).manual_seed(seed))
        self._transform = _BatchTransform(mean, std, augment, pad, self.generator, device,
                                          channels_last)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, device = len(self.split), self.split.images.device
        if self.weights is not None:
            order = torch.multinomial(self.weights, n, replacement=True,
                                      generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=device)
        else:
            order = torch.arange(n, device=device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self._transform(self.split.images[idx], self.split.labels[idx])


class _ImageFiles(torch.utils.data.Dataset):
    """Decodes one file per item inside DataLoader workers; unreadable files yield None."""

    def __init__(self, split: FileSplit, chans: int, res: int, resize: str) -> None:
        self.paths, self.labels, self.chans, self.res = split.paths, split.labels, chans, res
        self.resize = resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            image = _decode(self.paths[i], self.chans, self.res, self.resize)
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


class _Generators:
    """Generators saved and restored as one state (a loader's ``generator``, which the trainer
    keeps in a training state): the sampler's and the augmentation's of ``StreamLoader``."""

    def __init__(self, *generators: torch.Generator) -> None:
        self.generators = generators

    def get_state(self) -> torch.Tensor:
        return torch.cat([g.get_state() for g in self.generators])

    def set_state(self, state: torch.Tensor) -> None:
        sizes = [g.get_state().numel() for g in self.generators]
        for g, part in zip(self.generators, state.split(sizes)):
            g.set_state(part.clone())


class StreamLoader:
    """Batches of a FileSplit decoded by DataLoader workers, then augmented on the device;
    ``balanced`` as in ``DeviceLoader``."""

    mode = "streaming"

    def __init__(self, split: FileSplit, in_chans: int, resolution: int, batch_size: int,
                 device: torch.device | str, *, mean: Sequence[float], std: Sequence[float],
                 shuffle: bool = False, augment: Augment = Augment(), pad: int = 0,
                 seed: int = 0, drop_last: bool = False, channels_last: bool = False,
                 num_workers: int | None = None, balanced: bool = False,
                 resize: str = "squash") -> None:
        _check_batch_size(batch_size)
        self.device = torch.device(device)
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        files = _ImageFiles(split, in_chans, resolution, resize)
        # the order's generator goes to the sampler alone: the DataLoader would also draw its
        # workers' seeds from it, once per iterator, and a resumed training (a new iterator)
        # would then shuffle otherwise than the run it resumes
        order = torch.Generator().manual_seed(seed)
        if balanced:
            sampler = torch.utils.data.WeightedRandomSampler(
                class_balanced_weights(split.labels), len(split), generator=order)
        else:
            sampler = torch.utils.data.RandomSampler(files, generator=order) if shuffle \
                else None
        self._loader = torch.utils.data.DataLoader(
            files, batch_size=batch_size, sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
            drop_last=drop_last, collate_fn=_collate_readable,
        )
        generator = torch.Generator(device=self.device).manual_seed(seed)
        self._transform = _BatchTransform(mean, std, augment, pad, generator, self.device,
                                          channels_last)
        # the order and the augmentation draws, restored together when a training resumes
        self.generator = _Generators(order, generator)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self._loader:
            if batch is None:  # every file of this batch was unreadable
                continue
            yield self._transform(batch[0].to(self.device, non_blocking=True),
                                  batch[1].to(self.device, non_blocking=True))


def make_loader(dataset: Dataset, split: str, batch_size: int, device: torch.device | str,
                train: bool, seed: int, channels_last: bool = False, *,
                shuffle: bool | None = None, num_workers: int | None = None,
                balanced: bool = False) -> DeviceLoader | StreamLoader:
    """The loader for one split. train=True augments with ``dataset.augment``, shuffles and
    drops the last partial batch; train=False keeps every sample, unaugmented, in order
    unless ``shuffle`` (a class-mixed sample of a split sorted by class). ``balanced``:
    class-balanced draws (``DeviceLoader``)."""
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
                            num_workers=num_workers, balanced=balanced, resize=dataset.resize)
    return DeviceLoader(to_device(part, device), batch_size, mean=dataset.mean, std=dataset.std,
                        shuffle=shuffle, augment=augment, pad=pad, seed=seed, drop_last=drop_last,
                        channels_last=channels_last, balanced=balanced)
