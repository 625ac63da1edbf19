"""The split containers (``Split``, ``FileSplit``) and the loaded ``Dataset``."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .config import Augment


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

    `mean`/`std` are per channel in 0..1 units, computed on the train split only. `files`:
    an in-memory folder's image files, in the order ``Split.index`` counts (empty otherwise).
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
    files: tuple[str, ...] = ()
    resize: str = "squash"  # how a folder's images became square (config.RESIZE_MODES)
    labels_per_class: int | None = None  # the train split's cap per class (few labels)

    @property
    def dense(self) -> bool:
        """True when the labels are masks (uint8 [N, H, W]): a segmentation task."""
        return self.train.labels.dim() == 3

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

    def split_files(self, split: str) -> tuple[str, ...]:
        """The image files of ``split`` ("train", "val" or "test"; empty for embedded data)."""
        part = getattr(self, split)
        if isinstance(part, FileSplit):
            return part.paths
        if not self.files or part.index is None:
            return ()
        return tuple(self.files[i] for i in part.index.tolist())

    def fingerprint(self) -> str:
        """A digest of what each split holds: class names, channels, and per split its files
        (by ``file_ids``) or its samples' positions in their source, and its labels. Another
        split seed, train fraction, a folder that gained images: another fingerprint."""
        digest = hashlib.sha256(repr((self.class_names, self.in_chans)).encode())
        for name in ("train", "val", "test"):
            part = getattr(self, name)
            index = getattr(part, "index", None)
            for tensor in (self.file_ids(name), index, part.labels):
                if tensor is not None:
                    digest.update(tensor.cpu().contiguous().numpy().tobytes())
            digest.update(b"|")
        return digest.hexdigest()

    def file_ids(self, split: str) -> torch.Tensor:
        """An int64 id of each image file of ``split``: a hash of its path relative to the
        dataset's folder, so that a checkpoint can tell which files it trained on, however
        the folder is spelt (empty for embedded data)."""
        root = os.path.expanduser(self.name.partition(":")[2])  # as the files were listed
        ids = [int.from_bytes(hashlib.blake2b(Path(os.path.relpath(p, root)).as_posix()
                                              .encode(), digest_size=8).digest(),
                              "little", signed=True) for p in self.split_files(split)]
        return torch.tensor(ids, dtype=torch.int64)

    def differences(self, expected: Mapping[str, Any]) -> list[str]:
        """How this data differs from ``expected``, a description of the data a network was
        made for (run.yaml's ``data``, a checkpoint's): ``in_chans``, ``num_classes`` and,
        when known, ``class_names``, compared by name since labels are their indices. Empty
        when they match."""
        out = []
        if self.in_chans != expected.get("in_chans"):
            out.append(f"{self.in_chans} channel(s) instead of {expected.get('in_chans')}")
        names = expected.get("class_names")
        if not isinstance(names, list):  # described before class names were kept
            if self.num_classes != expected.get("num_classes"):
                out.append(f"{self.num_classes} classes instead of "
                           f"{expected.get('num_classes')}")
            return out
        new = [n for n in self.class_names if n not in names]
        gone = [n for n in names if n not in self.class_names]
        if new:
            out.append(f"class(es) {', '.join(map(repr, new))} added")
        if gone:
            out.append(f"class(es) {', '.join(map(repr, gone))} missing")
        if not new and not gone and list(self.class_names) != names:
            out.append("the same classes in another order")
        return out

    def summary(self) -> str:
        """One line: split sizes, classes, resolution, channels and mode."""
        mode = "streaming" if self.streaming else "in-memory"
        skipped = f", skipped {self.skipped} unreadable" if self.skipped else ""
        few = f" ({self.labels_per_class} a class)" if self.labels_per_class else ""
        return (
            f"{self.name}: train {len(self.train)}{few} / val {len(self.val)} / test "
            f"{len(self.test)}, "
            f"{self.num_classes} classes, {self.resolution}px, {self.in_chans} ch, {mode}{skipped}; "
            f"augment {self.augment.describe()}"
        )


def to_device(split: Split, device: torch.device | str) -> Split:
    """`split` with images and labels on `device` (a no-op when already there)."""
    return Split(split.images.to(device), split.labels.to(device), split.index)
