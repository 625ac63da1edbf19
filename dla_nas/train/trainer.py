"""Training: the short proxy runs the search calls, and full runs that retrain a winner.

One function, ``train``, trains a model on a ``Dataset`` for a budget and returns a
``TrainResult``. The loop is deliberately short: data already sits on the device, augmentation
runs in batches there, networks and batches are in channels_last order (``TrainConfig``'s
``channels_last``: faster on CUDA and on the CPU), and CUDA runs use bf16 autocast.

Choices made for fair ranking in few epochs (measured in ``benchmarks/proxy_ranking.py``):
the last BN of every residual branch starts at zero (a deep net starts as a shallow one), the
learning rate warms up for one epoch, and BN statistics are re-estimated before each
evaluation on a shuffled, class-mixed sample of the training images, drawn as training draws
them (class-balanced on imbalanced data, ``sampling``).

Small data sets give few optimiser steps per epoch, so a budget is ``epochs`` *and*
``min_steps``: training runs for whichever is longer (``TrainConfig.epochs_for``). An epoch
over a train split of fewer than ``min_epoch_images`` images (a few labels a class) is
several passes over it, so that the evaluation after each epoch stays a small share.
"""

from __future__ import annotations

import itertools
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset, make_loader
from ..data.config import IGNORE_INDEX
from ..errors import TrainError
from .config import TrainConfig, check_device
from .metrics import Metrics, classification_metrics, dense_metrics, metrics_from_dict

_HISTORY = ("val_acc_per_epoch", "val_loss_per_epoch", "train_loss_per_epoch")


@dataclass(frozen=True)
class EpochReport:
    """What the per-epoch callback sees."""

    epoch: int
    train_loss: float
    val_acc: float
    val_loss: float
    seconds: float
    images_per_second: float
    val: Metrics | None = None  # this epoch's full validation metrics
    epochs: int = 0  # the epochs this run trains in all (0: not said)
    # state() -> the training state after this epoch, for ``train(..., resume=state)``:
    # model, optimiser, schedule and shuffling state plus the history so far (tensors and
    # plain types only, so ``torch.save`` / ``torch.load(weights_only=True)`` round-trip it)
    state: Callable[[], dict] | None = field(default=None, repr=False, compare=False)


@dataclass
class TrainResult:
    """The record of one training run. ``val`` holds the last evaluation's full metrics."""

    val_acc: float
    val_loss: float
    val_acc_per_epoch: list[float]
    val_loss_per_epoch: list[float]
    train_loss_per_epoch: list[float]
    epochs_run: int
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float
    seed: int
    device: str
    sampling: str = "uniform"  # what ran: balanced or uniform
    diverged: bool = False
    stopped_early: bool = False
    divergence: str = ""
    val: Metrics | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("val")
        return {**out, **(self.val.to_dict("val_") if self.val is not None else {})}


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    check_device(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def describe_device(device: torch.device) -> str:
    """``cpu``, or a CUDA device with its card's name (``cuda:0 (NVIDIA H200)``), for records
    that say where a figure was measured."""
    if device.type != "cuda":
        return str(device)
    return f"{device} ({torch.cuda.get_device_name(device)})"


def param_groups(model: nn.Module, weight_decay: float, lr: float,
                 backbone_lr_mult: float = 1.0) -> list[dict]:
    """Optimiser groups: weight decay on conv and linear weights only (not on BN parameters
    or biases); with ``backbone_lr_mult`` other than 1, the backbone at ``lr *
    backbone_lr_mult`` and the head (see ``backbone_parameters``) at ``lr``. Groups are named ``all`` and
    ``all_no_decay``, or ``backbone``, ``backbone_no_decay``, ``head`` and ``head_no_decay``
    (two groups when the rates are equal, so a training state saved that way resumes)."""
    backbone = {id(p) for p in backbone_parameters(model)}
    split = backbone_lr_mult != 1.0
    groups: dict[str, list] = {}
    for p in model.parameters():
        part = ("backbone" if id(p) in backbone else "head") if split else "all"
        groups.setdefault(part if p.ndim > 1 else f"{part}_no_decay", []).append(p)
    return [{"name": name, "params": params,
             "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
             "lr": lr * (backbone_lr_mult if name.startswith("backbone") else 1.0)}
            for name, params in groups.items()]


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter outside the head (``model.head_parameters()`` where the model says,
    else ``model.fc``): what ``freeze_epochs`` holds still."""
    own = getattr(model, "head_parameters", None)
    head = {id(p) for p in (own() if own is not None
                            else getattr(model, "fc", nn.Identity()).parameters())}
    return [p for p in model.parameters() if id(p) not in head]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine to 0."""
    if schedule == "onecycle" and step < warmup:
        return (step + 1) / warmup
    start = warmup if schedule == "onecycle" else 0
    progress = (step - start) / max(1, total - start)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate BN running statistics as exact averages over ``batches`` (no augmentation
    beyond what the batches carry), so that evaluation uses the current weights' statistics."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches:
        return
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    for x in batches:
        model(x)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, label_smoothing: float = 0.0,
             autocast: bool = False) -> Metrics:
    """Accuracy, balanced accuracy, macro F1, per-class recall, the confusion matrix and the
    mean cross-entropy over a loader, in eval mode; over pixels for masks (``DenseMetrics``,
    with IoU)."""
    model.eval()
    loss_sum, labels, preds, n = 0.0, [], [], 0
    cm = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    dense = False
    for x, y in loader:
        with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            logits = model(x)
        dense = y.dim() == 3
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum",
                                    label_smoothing=label_smoothing,
                                    ignore_index=IGNORE_INDEX if dense else -100).item()
        if dense:  # pixels: a running confusion matrix, not every prediction kept
            scored = y != IGNORE_INDEX
            n += int(scored.sum())
            pairs = y[scored] * num_classes + logits.argmax(1)[scored]
            cm += torch.bincount(pairs.cpu(), minlength=num_classes * num_classes)
        else:
            labels.append(y.cpu())
            preds.append(logits.argmax(1).cpu())
    if dense:
        return dense_metrics(cm.view(num_classes, num_classes).numpy(), loss_sum / max(n, 1))
    y_true = torch.cat(labels).numpy() if labels else torch.zeros(0, dtype=torch.int64).numpy()
    y_pred = torch.cat(preds).numpy() if preds else y_true
    return classification_metrics(y_true, y_pred, num_classes, loss_sum / max(len(y_true), 1))


def task_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float,
              dense: bool) -> torch.Tensor:
    """Cross-entropy: over the images, or for masks over the scored pixels (a batch whose
    pixels are all ``IGNORE_INDEX`` counts 0, not NaN)."""
    if not dense:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    total = F.cross_entropy(logits, y, label_smoothing=label_smoothing,
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (y != IGNORE_INDEX).sum().clamp(min=1)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    callback: Callable[[EpochReport], bool | None] | None = None,
    resume: dict | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train`` and validate on ``data.val`` after every epoch.

    ``callback(report)`` runs after each epoch; returning True stops training (the search's
    early stopping). A NaN or inf loss ends the run with ``diverged=True``.

    ``resume``: a dict from ``report.state()`` of an earlier run of the same model, data and
    config; training continues after that epoch (weights, optimiser, schedule, shuffling and
    the per-epoch history restored), so a paused or killed trial picks up where it was."""
    device = resolve_device(cfg.device)
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    cuda = device.type == "cuda"
    torch.manual_seed(cfg.seed)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.compile else model
    balanced = cfg.balanced(data)
    dense = data.dense  # read once, not in the training step
    train_loader = make_loader(data, "train", cfg.batch_size, device, train=True, seed=cfg.seed,
                               channels_last=cfg.channels_last, balanced=balanced)
    val_loader = make_loader(data, "val", cfg.eval_batch_size, device, train=False,
                             seed=cfg.seed, channels_last=cfg.channels_last)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay, cfg.lr, cfg.backbone_lr_mult),
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    backbone = backbone_parameters(model) if cfg.freeze_epochs else []  # held still at first
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] \
        if cfg.freeze_bn else []
    passes = cfg.passes_per_epoch(len(data.train))
    steps_per_epoch = len(train_loader) * passes
    epochs = cfg.epochs_for(len(data.train))
    total = epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))

    result = TrainResult(0.0, float("inf"), [], [], [], 0, 0.0, 0.0, 0.0, cfg.seed,
                         describe_device(device), "balanced" if balanced else "uniform")
    images, train_time, step, start = 0, 0.0, 0, 0
    generator = getattr(train_loader, "generator", None)  # the shuffling and augmentation RNG

    def state() -> dict:
        return {
            "format": "dla-nas-train-state/1", "epoch": result.epochs_run, "step": step,
            "images": images, "train_time": train_time,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": generator.get_state().clone() if generator is not None else None,
            "history": {k: list(getattr(result, k)) for k in _HISTORY},
            "val": result.val.to_dict() if result.val is not None else None,
        }

    if resume is not None:
        start = int(resume["epoch"])
        if not 0 <= start <= epochs:
            raise TrainError(f"resume: epoch {start} is not allowed (0 <= x <= {epochs})")
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        saved = resume.get("generator")
        # a state saved on another device (a CUDA generator's is another size): the order
        # and augmentation draws start again from the seed; the weights go on as saved
        if generator is not None and saved is not None \
                and saved.numel() == generator.get_state().numel():
            generator.set_state(saved)
        step, images, train_time = int(resume["step"]), int(resume["images"]), float(resume["train_time"])
        for key in _HISTORY:
            setattr(result, key, list(resume["history"][key]))
        result.epochs_run = start
        if result.val_acc_per_epoch:
            result.val_acc, result.val_loss = result.val_acc_per_epoch[-1], result.val_loss_per_epoch[-1]
        if resume.get("val") is not None:
            result.val = metrics_from_dict(resume["val"])
    for epoch in range(start, epochs):
        frozen = epoch < cfg.freeze_epochs  # the backbone is a fixed feature extractor
        for p in backbone:
            p.requires_grad_(not frozen)
        model.train(not frozen)
        for m in bns:
            m.eval()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        epoch_images = 0
        for x, y in itertools.chain.from_iterable(train_loader for _ in range(passes)):
            with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                loss = task_loss(step_model(x), y, cfg.label_smoothing, dense)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            epoch_images += y.shape[0]
            step += 1
            if step % 25 == 0 and not torch.isfinite(loss_sum):  # a sync now and then only
                break
        images += epoch_images
        train_loss = loss_sum.item() / steps_per_epoch
        if cuda:
            torch.cuda.synchronize(device)
        epoch_train_time = time.perf_counter() - t0
        train_time += epoch_train_time
        result.train_loss_per_epoch.append(train_loss)
        result.epochs_run = epoch + 1
        if not math.isfinite(train_loss):
            result.diverged, result.divergence = True, f"non-finite training loss in epoch {epoch + 1}"
            break
        if cfg.bn_recalibration_batches and not (frozen or cfg.freeze_bn):
            # a fresh, seeded, class-mixed sample per epoch (a folder's split is sorted by
            # class), drawn as training draws (balanced or not: the layers after each BN
            # learnt its statistics of such batches); seeded by epoch so that a resumed run
            # draws what an unbroken one would
            calib_loader = make_loader(data, "train", cfg.batch_size, device, train=False,
                                       seed=cfg.seed * 100_003 + epoch + 1,
                                       channels_last=cfg.channels_last,
                                       shuffle=True, num_workers=0, balanced=balanced)
            recalibrate_bn(model, [x for _, (x, _) in zip(range(cfg.bn_recalibration_batches),
                                                          calib_loader)])
        result.val = evaluate(model, val_loader, data.num_classes, cfg.label_smoothing,
                              autocast=cuda)
        val_acc, val_loss = result.val.acc, result.val.loss
        result.val_acc_per_epoch.append(val_acc)
        result.val_loss_per_epoch.append(val_loss)
        result.val_acc, result.val_loss = val_acc, val_loss
        if not math.isfinite(val_loss):
            result.diverged, result.divergence = True, f"non-finite validation loss in epoch {epoch + 1}"
            break
        report = EpochReport(epoch + 1, train_loss, val_acc, val_loss, time.perf_counter() - t0,
                             epoch_images / epoch_train_time, val=result.val, epochs=epochs,
                             state=state)
        if callback is not None and callback(report):
            result.stopped_early = epoch + 1 < epochs
            break
    for p in backbone:  # a run stopped while frozen returns a trainable model
        p.requires_grad_(True)
    result.train_seconds = train_time
    result.images_per_second = images / train_time if train_time > 0 else 0.0
    result.peak_memory_mb = _peak_memory_mb(device)
    return result
