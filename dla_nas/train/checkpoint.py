"""Checkpoints of ``dla-nas train``: weights plus what rebuilds and evaluates the model, saved
as tensors and plain data, and read back with ``torch.load(weights_only=True)`` and checked
field by field; and the training states that ``train``, ``confirm`` and the Ray trials save
after each epoch to resume from."""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..arch.backbone_genome import genome_from_dict
from ..arch.builder import build_model
from ..data import Dataset
from ..errors import CheckpointError, GenomeError
from ..files import atomic_path, write_file
from ..weights.loading import first_non_finite, load_tensors_only, refused_global
from .config import TrainConfig


def save_train_state(path: Path, key: Any, state: dict, **extra: Any) -> None:
    """Write ``state`` (a trainer ``report.state()``) with ``key`` (what must match for a
    later run to resume from it) and ``extra`` plain fields, atomically."""
    with atomic_path(path) as part:
        torch.save({"key": key, "train": state, **extra}, part)


def load_train_state(path: Path, key: Any) -> dict | None:
    """What ``save_train_state`` wrote at ``path`` for ``key`` (``train``: the state, and the
    extra fields), or None: no file, an unreadable one, or another key's."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a disk fault, a foreign file: nothing to resume from
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def save_checkpoint(path, model: nn.Module, cfg: TrainConfig, data: Dataset, extra: dict) -> None:
    """Save weights plus everything needed to rebuild and evaluate the model: the genome, the
    training config and the data description. Only tensors and plain types, so that
    ``torch.load(weights_only=True)`` reads it. Written atomically: a full disk leaves the
    previous file at ``path`` as it was."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # torch.save reports a failed write vaguely; Python's write names it
    torch.save({
        "format": "dla-nas-checkpoint/1",
        "state_dict": state,
        "genome": model.genome.to_dict(),
        "num_classes": data.num_classes,
        "train_config": asdict(cfg),
        "data": {"name": data.name, "resolution": data.resolution, "in_chans": data.in_chans,
                 "num_classes": data.num_classes, "mean": list(data.mean),
                 "std": list(data.std), "class_names": list(data.class_names),
                 "resize": data.resize, "labels_per_class": data.labels_per_class},
        # which files it trained on: eval warns when they are in the split it reads
        "train_files": data.file_ids("train"),
        **extra,
    }, buffer)
    write_file(Path(path), buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict:
    """Read and check a checkpoint written by ``save_checkpoint`` without unpickling arbitrary
    objects (``weights_only=True``). Raise ``CheckpointError`` naming the file, and the field
    when one is missing or not allowed."""
    try:
        ckpt = load_tensors_only(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a folder, not a checkpoint file") from None
    except Exception as exc:  # torch raises UnpicklingError, OSError, EOFError, RuntimeError ...
        raise CheckpointError(f"{path}: {_unreadable(exc)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "dla-nas-checkpoint/1":
        raise CheckpointError(f"{path}: not a dla-nas checkpoint (no 'format: dla-nas-checkpoint/1')")
    _check_checkpoint(path, ckpt)
    return ckpt


def _unreadable(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, as a sentence for the user."""
    if not isinstance(exc, pickle.UnpicklingError):
        return "truncated, or not a checkpoint file: torch.load cannot read it."
    found = refused_global(exc)
    if found:
        return (f"not a loadable dla-nas checkpoint: it holds Python code or objects "
                f"({found}), which torch.load(weights_only=True) refuses to load; a "
                "checkpoint holds only tensors and plain data.")
    return ("not a loadable dla-nas checkpoint: torch.load(weights_only=True) refuses its "
            "contents, which are damaged or more than tensors and plain data.")


# what ``cmd_eval`` reads from a checkpoint, with the type it must have
_CHECKPOINT_FIELDS = (("state_dict", dict), ("num_classes", int), ("data", dict),
                      ("data.resolution", int), ("data.in_chans", int),
                      ("data.num_classes", int), ("data.mean", list), ("data.std", list))


def _check_checkpoint(path: str | Path, ckpt: dict) -> None:
    """Raise ``CheckpointError`` for the first field of a dla-nas checkpoint that is missing or
    not allowed: the fields of ``_CHECKPOINT_FIELDS``, a genome, and a
    normalisation of finite numbers per channel with every std > 0."""
    for key, kind in _CHECKPOINT_FIELDS:
        value: Any = ckpt
        for part in key.split("."):
            if part not in value:
                raise CheckpointError(f"{path}: {key}: missing (the file is damaged or was not "
                                      "written by dla-nas train)")
            value = value[part]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: {key}: {value!r:.60} is not allowed (a "
                                  f"{kind.__name__})")
    if not isinstance(ckpt.get("genome"), dict):
        raise CheckpointError(f"{path}: genome: missing (a genome mapping)")
    bad = first_non_finite(ckpt["state_dict"])
    if bad is not None:
        raise CheckpointError(f"{path}: state_dict.{bad}: holds NaN or infinite values (its "
                              "training diverged, or the file is damaged); retrain it")
    data = ckpt["data"]
    names = data.get("class_names")  # absent from the earliest checkpoints
    if names is not None and not (isinstance(names, list) and len(names) == data["num_classes"]
                                  and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: data.class_names: {names!r:.60} is not allowed (a list "
                              f"of {data['num_classes']} class names)")
    for key in ("mean", "std"):
        values = data[key]
        ok = len(values) == data["in_chans"] and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values)
        if not ok or (key == "std" and any(v <= 0 for v in values)):
            allowed = "a finite number > 0" if key == "std" else "a finite number"
            raise CheckpointError(f"{path}: data.{key}: {values!r:.60} is not allowed "
                                  f"({allowed} per input channel, {data['in_chans']} in all)")


def checkpoint_model(ckpt: dict, path: str) -> nn.Module:
    """The network of a checked checkpoint (``load_checkpoint``) with its weights loaded;
    a genome or class count that does not match the weights raises ``CheckpointError``
    naming the file."""
    try:
        model = build_model(genome_from_dict(ckpt["genome"]), ckpt["num_classes"],
                            ckpt["data"]["in_chans"])
    except GenomeError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(f"{path}: its weights do not match its genome and num_classes "
                              f"({ckpt['num_classes']}): {first[:150]}") from None
    return model
