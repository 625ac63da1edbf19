"""Proxy evaluation of one candidate for a search space: cost before training, constraint
check, low-fidelity training, and the trial record. Both search backends call this."""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import torch
from torch import nn

from ..arch.builder import build_model
from ..arch.cost import model_cost
from ..arch.genome import Genome
from ..arch.latency import model_latency, read_table, table_key
from ..data import Augment, Dataset, load_dataset
from ..errors import DataError
from ..results import VAL_METRICS, TrialRecord
from ..train.config import from_scratch
from ..train.trainer import EpochReport, resolve_device, train
from ..weights import Pretrained, imagenet_normalised
from .space import Recipe, SearchSpace


def load_task_data(space: SearchSpace, data_dir: str | None = None, *,
                   train_fraction: float | None = None, augment: Augment | None = None,
                   resolution: int | None = None) -> Dataset:
    """The dataset of a space's task, checked against ``task.classes`` (see
    ``SearchSpace.data_config`` for ``train_fraction``, ``augment`` and ``resolution``),
    ImageNet-normalised when trials start from ImageNet weights."""
    task = space.task
    data = load_dataset(space.data_config(data_dir, train_fraction=train_fraction,
                                          augment=augment, resolution=resolution))
    if space.imagenet_inputs:  # the statistics the weights were trained on
        data = imagenet_normalised(data)
    if data.dense != space.dense:
        how = (" (a backbone section with task: dense, or a genome section with a decoder)"
               if data.dense else "")
        raise DataError(f"{data.name}: {'masks need' if data.dense else 'class folders need'} "
                        f"a space of {'dense' if data.dense else 'classifying'} networks; "
                        f"{space.path} is {'dense' if space.dense else 'a classifier space'}"
                        f"{how}")
    if task.classes is not None and task.classes != data.num_classes:
        raise DataError(f"{space.path}: task.classes is {task.classes}, but "
                        f"{data.name} has {data.num_classes} classes")
    return data


class ProxyEvaluator:
    """Evaluates candidates of one space on one device. The dataset is loaded and moved to
    the device once per resolution, then shared by every trial of this process. A trial's
    recipe (``TrialRecord.recipe``) chooses the resolution, lr, weight decay and augmentation
    it trains with; the rest is the space's proxy."""

    def __init__(self, space: SearchSpace, device: str = "auto", threads: int | None = None,
                 data_dir: str | None = None, worker: str = "", latency_threads: int = 1,
                 latency_table: str | None = None) -> None:
        self.space = space
        self.device = resolve_device(device)
        self.worker = worker
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.data_dir = data_dir
        self.data: Dataset = load_task_data(space, data_dir).to(self.device)
        self._data_by_resolution = {self.data.resolution: self.data}
        self.train_config = space.proxy.train_config(device=str(self.device), threads=threads)
        self.needs_latency = "latency_ms" in space.metrics or "max_latency_ms" in space.constraints
        self.latency_threads = latency_threads
        # figures measured on the target machine, by network and input (arch.latency)
        self.latency_table = read_table(latency_table) if latency_table else {}
        # fetched and read once per process; each trial inherits what matches its genome
        self.pretrained = (Pretrained(space.proxy.pretrained)
                           if space.proxy.pretrained is not None else None)
        # a trial that draws one of the space's hand designs is named after it
        self.hand_designs = {space.hand_design(name).canonical_hash(): name
                             for name in space.baselines}

    @functools.cached_property
    def data_fingerprint(self) -> str:
        """``Dataset.fingerprint`` of the task data (which images each split holds), once
        per process: what a trial's saved training state must match."""
        return self.data.fingerprint()

    def data_at(self, resolution: int | None) -> Dataset:
        """The task data at ``resolution`` px (None: the task's), loaded once."""
        if resolution is None:
            return self.data
        if resolution not in self._data_by_resolution:
            data = load_task_data(self.space, self.data_dir, resolution=resolution)
            self._data_by_resolution[resolution] = data.to(self.device)
        return self._data_by_resolution[resolution]

    def build(self, genome: Genome) -> nn.Module:
        """The model with the proxy seed's initial weights, whatever this process ran before,
        and the proxy's pretrained tensors where they match (``model.transfer_report``)."""
        torch.manual_seed(self.train_config.seed)
        model = build_model(genome, self.data.num_classes, self.data.in_chans,
                            **self.train_config.build_options)
        if self.pretrained is not None:
            model.transfer_report = self.pretrained.load_into(model, require_match=False)
        return model

    def new_record(self, trial: int, **fields) -> TrialRecord:
        """A record started now by this worker, with the data shape the network is built for
        (at the resolution of ``fields["recipe"]``, when it has one), named after the hand
        design it is, if any."""
        data = self.data_at(Recipe.from_dict(fields.get("recipe", {})).resolution)
        fields.setdefault("name", self.hand_designs.get(fields.get("hash", ""), ""))
        return TrialRecord(trial=trial, status="ok", worker=self.worker, device=str(self.device),
                           input_shape=[data.in_chans, data.resolution, data.resolution],
                           num_classes=data.num_classes, started_at=time.time(), **fields)

    def cost(self, model: nn.Module, input_shape: tuple[int, int, int],
             digest: str = "") -> dict[str, float]:
        """params, macs and, when the space uses it, the latency at batch 1 (ms): the latency
        table's figure for the network of hash ``digest`` at this input, else the exported
        graph's median in ONNX Runtime on ``latency_threads`` pinned CPUs (``arch.latency``);
        ``latency_from`` says which ("table" or "measured")."""
        c = model_cost(model, input_shape)
        out: dict[str, Any] = {"params": c.params, "macs": c.macs}
        if self.needs_latency:
            known = self.latency_table.get(table_key(digest, input_shape))
            out["latency_ms"] = known if known is not None else \
                model_latency(model, input_shape, self.latency_threads).median_ms
            out["latency_from"] = "table" if known is not None else "measured"
        return out

    def violations(self, cost: dict[str, float]) -> dict[str, float]:
        """How far each constraint is exceeded, relative to its limit (empty: feasible)."""
        return {k: v for k, v in self.space.constraint_values(cost.get).items() if v > 0}

    def evaluate_baseline(self, name: str, trial: int) -> TrialRecord:
        """A hand design or zoo network, with the same proxy as the search trials."""
        genome = self.space.baseline(name)
        genome.feature_sizes(self.data.resolution)
        record = self.new_record(trial, hash=genome.canonical_hash(), kind="baseline",
                                 name=name, genome=genome.to_dict())
        return self.measure(self.build(genome), record)

    def measure(self, model: nn.Module, record: TrialRecord,
                callback: Callable[[EpochReport], bool | None] | None = None,
                resume: dict | None = None) -> TrialRecord:
        """Fill ``record`` with the model's cost and, when feasible, its proxy training
        (continued from ``resume``, a training state, when given), with its recipe."""
        cost = self.cost(model, tuple(record.input_shape), record.hash)
        record.status = "ok"
        record.params, record.macs = int(cost["params"]), int(cost["macs"])
        record.latency_ms, record.latency_from = cost.get("latency_ms"), cost.get("latency_from")
        record.violations = self.violations(cost)
        if record.violations:
            record.status = "infeasible"
            record.reason = "over " + ", ".join(
                f"{k} ({self.space.constraints[k]:,.0f})" for k in record.violations)
        else:  # only a trained network has started from the weights
            report = getattr(model, "transfer_report", None)
            record.pretrained = report.to_record(detail=False) if report is not None else None
            recipe = Recipe.from_dict(record.recipe)
            result = train(model, recipe.on(self.data_at(recipe.resolution)),
                           from_scratch(recipe.train_config(self.train_config),
                                        report is not None or record.kind != "baseline"),
                           callback,
                           resume=resume)
            record.val_acc = result.val_acc
            if result.val is not None:
                record.set_val_metrics(result.val)
            record.val_acc_per_epoch = result.val_acc_per_epoch
            record.epochs_run = result.epochs_run
            record.train_seconds = result.train_seconds
            if result.stopped_early:
                record.stopped_rung = result.epochs_run
            if result.diverged:
                record.status, record.reason = "diverged", result.divergence
        return record.finish()

    def reused(self, record: TrialRecord, source: TrialRecord) -> TrialRecord:
        """``record`` filled from ``source``, an earlier evaluation of the same key."""
        for key in ("val_acc", "macs", "params", "latency_ms", "latency_from", "val_acc_per_epoch",
                    "epochs_run",
                    "violations", "stopped_rung", "pretrained", *VAL_METRICS):
            setattr(record, key, getattr(source, key))
        record.status = "reused" if source.status in ("ok", "reused") else source.status
        record.reason = source.reason
        record.reused_from = source.reused_from if source.reused_from is not None else source.trial
        return record.finish()
