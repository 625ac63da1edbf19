"""How to train (``TrainConfig``): the recipe of ``train`` and ``confirm`` and its checks.

Free of torch, so that the command line can show the defaults (``--help``) and refuse a bad
flag without loading it; the trainer (``train.trainer``) runs the recipe."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..arch.genome import INITS
from ..checks import boolean, check, check_fields, integer, number, one_of, optional
from ..data.config import SAMPLINGS, balanced_sampling
from ..errors import TrainError

if TYPE_CHECKING:
    from ..data import Dataset

SCHEDULES = ("onecycle", "cosine")
# what `train --pretrained` changes from the defaults: the backbone learns at a tenth of the
# head's rate, and the new head trains alone for the first epoch, so that its random start
# does not push large gradients into the pretrained features
FINE_TUNING = {"backbone_lr_mult": 0.1, "freeze_epochs": 1}
PRETRAINED_RESOLUTION = 224  # the ImageNet weights' training size

TRAIN_RULES = {
    "epochs": integer(1), "min_steps": integer(0), "batch_size": integer(1),
    "lr": number(0, low_open=True), "momentum": number(0, 1, high_open=True),
    "weight_decay": number(0), "label_smoothing": number(0, 1, high_open=True),
    "schedule": one_of(SCHEDULES), "bn_recalibration_batches": integer(0),
    "threads": optional(integer(1)), "eval_batch_size": integer(1), "seed": integer(0),
    "zero_init_residual": boolean, "compile": boolean, "channels_last": boolean,
    "backbone_lr_mult": number(0), "freeze_epochs": integer(0), "freeze_bn": boolean,
    "min_epoch_images": integer(0),
    "sampling": one_of(SAMPLINGS), "init": one_of(INITS),
}


def fine_tuning(epochs: int) -> dict:
    """``FINE_TUNING`` for a run of ``epochs`` epochs."""
    return {**FINE_TUNING, "freeze_epochs": frozen_epochs(FINE_TUNING["freeze_epochs"], epochs)}


def from_scratch(cfg: TrainConfig, pretrained: bool) -> TrainConfig:
    """``cfg`` for a hand design of the line (``--baselines``) that starts from
    ``pretrained`` weights or not: one that does not (a U-Net or zoo network beside a space
    over an ImageNet backbone) trains without the fine-tuning settings, which would hold
    all but its last layer still and slow."""
    return cfg if pretrained else replace(cfg, backbone_lr_mult=1.0, freeze_epochs=0)


def frozen_epochs(freeze_epochs: int, epochs: int) -> int:
    """``freeze_epochs`` in a run of ``epochs`` epochs: at least one of them trains it all."""
    return max(0, min(freeze_epochs, epochs - 1))


@dataclass(frozen=True)
class TrainConfig:
    """How to train: budget, optimiser, schedule, device. The defaults are the recipe of
    ``dla-nas train`` and ``confirm``; a search's proxy sets its own (``search.space.Proxy``)."""

    epochs: int = 15
    # at least this many optimiser steps: more epochs on small data (0 turns it off). 1,000
    # left small networks underfit on small folders: 2,000 raised plain_cnn's balanced
    # accuracy on the magnetic tiles from 0.66 to 0.85 and kept neu-steel's and digits'
    # (docs/reports/unseen-data.md, "Steps")
    min_steps: int = 2000
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "onecycle"
    warmup_epochs: float = 1.0
    # how the network's weights start (arch.genome.INITS), for whoever builds it: PyTorch's
    # defaults beat the official init on neu-steel, the magnetic tiles and digits
    init: str = "torch"
    zero_init_residual: bool = True
    bn_recalibration_batches: int = 4
    # how batches are drawn (data.config.SAMPLINGS): auto is class-balanced on imbalanced
    # data, which made the magnetic-tile set learn its rare defects (docs/guide/training.md,
    # "Imbalanced data")
    sampling: str = "auto"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    compile: bool = False
    # the networks' and batches' memory order: channels_last is faster on CUDA, and on the CPU
    # for the networks of the reference runs (docs/reports/benchmarks.md, "Memory order on
    # the CPU"); NCHW (False) gives the same results up to float rounding
    channels_last: bool = True
    eval_batch_size: int = 500
    # where min_steps stretches training over many passes of a small train split, an epoch
    # is several passes, of at least this many images: with few labels a pass is a step or
    # two, and the val pass (and BN re-estimation) after each epoch would cost several times
    # the training (0: an epoch is one pass)
    min_epoch_images: int = 512
    # fine-tuning (see ``FINE_TUNING``): the backbone's share of ``lr``, epochs that train the
    # head alone, and BN statistics kept as loaded (no update, no recalibration)
    backbone_lr_mult: float = 1.0
    freeze_epochs: int = 0
    freeze_bn: bool = False

    def __post_init__(self) -> None:
        check_fields(self, TRAIN_RULES, TrainError)
        check("warmup_epochs", self.warmup_epochs, number(0, self.epochs), TrainError)
        check("freeze_epochs", self.freeze_epochs, integer(0, self.epochs - 1), TrainError)
        check_device(self.device)

    def steps_per_pass(self, train_size: int) -> int:
        """Optimiser steps in one pass over the train split (the last partial batch is
        dropped unless it is the only one)."""
        return max(1, train_size // self.batch_size)

    def passes_per_epoch(self, train_size: int) -> int:
        """Passes over the train split in one epoch: enough for ``min_epoch_images``, but no
        more than ``min_steps`` asks for beyond ``epochs`` passes (so the steps in all stay
        what ``epochs`` and ``min_steps`` say, give or take one epoch)."""
        steps = self.steps_per_pass(train_size)
        seen = steps * min(self.batch_size, max(train_size, 1))
        wanted = math.ceil(self.min_epoch_images / seen)
        stretched = math.ceil(self.min_steps / (self.epochs * steps))
        return max(1, min(wanted, stretched))

    def steps_per_epoch(self, train_size: int) -> int:
        return self.steps_per_pass(train_size) * self.passes_per_epoch(train_size)

    def balanced(self, data: Dataset) -> bool:
        """Whether this recipe draws class-balanced batches from ``data``'s train split
        (never for masks: an image holds several classes)."""
        if data.dense:
            if self.sampling == "balanced":
                raise TrainError("sampling: 'balanced' is not allowed for a dense task (auto "
                                 "or uniform: an image holds several classes)")
            return False
        return balanced_sampling(self.sampling, data.train.labels.cpu().bincount().tolist())

    def describe(self, data: Dataset) -> str:
        """How ``data`` is seen in training beyond what ``data.summary()`` says (it has the
        augmentation), for the lines that say what ran: sampling, initial weights, resize."""
        resize = f", resize {data.resize}" if data.name.startswith("folder:") else ""
        return (f"{'balanced' if self.balanced(data) else 'uniform'} sampling, {self.init} "
                f"init{resize}")

    @property
    def build_options(self) -> dict:
        """``build_model``'s keywords of this recipe: how the weights start."""
        return {"init": self.init, "zero_init_residual": self.zero_init_residual}

    def epochs_for(self, train_size: int) -> int:
        """Epochs to run on ``train_size`` images: ``epochs``, or more to reach ``min_steps``."""
        return max(self.epochs, math.ceil(self.min_steps / self.steps_per_epoch(train_size)))


def check_device(spec: str) -> None:
    """Refuses a device spec that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or a CUDA
    device this machine lacks (torch is imported for a CUDA spec only)."""
    if spec in ("auto", "cpu"):
        return
    if re.fullmatch(r"cuda(:[0-9]+)?", spec):
        import torch

        if not torch.cuda.is_available():
            raise TrainError(f"device: {spec!r} is not available here (no CUDA); use cpu or auto")
        if spec.startswith("cuda:") and int(spec[5:]) >= torch.cuda.device_count():
            raise TrainError(f"device: {spec!r} is not allowed "
                             f"(this machine has {torch.cuda.device_count()} CUDA devices)")
        return
    raise TrainError(f"device: {spec!r} is not allowed (cpu, cuda, cuda:N or auto)")


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1
