"""Confirmation of a search: retrain chosen trials and hand-designed baselines with several
seeds at full fidelity, and evaluate each once on the test split, which the search never saw.

Every finished (candidate, seed) is one line of ``confirm.jsonl`` in the run folder, appended
and flushed at once, and the unit in training saves its state after each epoch, so a killed
confirmation loses at most an epoch, and the same command continues it without retraining
anything that finished. A rerun with another recipe
is refused: its figures would not be comparable. Several confirmations may share the file: each
claims a unit before training it (``confirm.jsonl.claims``, under the file's lock), so no unit
trains twice, and a unit whose process died is taken up again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..arch.backbone_genome import genome_from_dict
from ..arch.baselines import LINE, baseline_genome, check_baseline_task
from ..arch.builder import build_model
from ..arch.cost import model_cost
from ..data import Dataset, make_loader
from ..dominance import non_dominated_sort
from ..errors import DataError, RunError
from ..files import safe_name
from ..results import RunStore, TrialRecord, append_line, file_lock, load_run, read_jsonl
from ..search.space import Recipe, SearchSpace
from ..train.checkpoint import load_train_state, save_train_state
from ..train.config import TrainConfig, from_scratch
from ..train.metrics import learnt_little
from ..train.trainer import EpochReport, evaluate, resolve_device, train
from ..weights import Pretrained
from ..weights.loading import write_state_dict
from .claims import Claims, is_local, is_mine, this_process
from .pareto import front, hypervolume, run_objectives

CONFIRM_FILE = "confirm.jsonl"


@dataclass(frozen=True)
class Candidate:
    """A network to confirm: a search trial (``trial``) or a baseline (``label`` is its
    name), with its genome. ``searched``: the training settings searched with the trial's
    genome (resolution, lr, weight_decay, augment), which replace the confirmation's own;
    ``hash`` then names both (``TrialRecord.key``)."""

    label: str
    kind: str  # "search" or "baseline"
    hash: str
    trial: int | None = None
    genome: dict | None = None
    proxy_val_acc: float | None = None
    searched: dict = field(default_factory=dict)
    proxy_val_balanced_acc: float | None = None
    proxy_val_miou: float | None = None

    def build(self, num_classes: int, in_chans: int, cfg: TrainConfig):
        return build_model(genome_from_dict(self.genome), num_classes, in_chans,
                           **cfg.build_options)

    @property
    def unit(self) -> tuple[str, str]:
        return unit_of(self.kind, self.label, self.hash)

    def check(self, resolution: int) -> None:
        """Raise GenomeError when the network cannot take its inputs: ``resolution`` px, or
        its searched resolution."""
        genome_from_dict(self.genome).feature_sizes(self.searched.get("resolution", resolution))

    def config(self, cfg: TrainConfig, seed: int) -> TrainConfig:
        """``cfg`` with this seed and the training settings the trial drew."""
        return Recipe.from_dict(self.searched).train_config(dataclasses.replace(cfg, seed=seed))

    def data(self, data: Dataset) -> Dataset:
        """``data`` (at the searched resolution) with the searched augmentation."""
        return Recipe.from_dict(self.searched).on(data)


@dataclass
class ConfirmRecord:
    """One candidate trained with one seed and evaluated once on the test split."""

    label: str
    kind: str
    hash: str
    seed: int
    trial: int | None = None
    macs: int = 0
    params: int = 0
    val_acc: float = 0.0
    test_acc: float = 0.0
    test_balanced_acc: float = 0.0
    test_macro_f1: float = 0.0
    test_per_class_recall: list = field(default_factory=list)
    test_confusion: list = field(default_factory=list)
    proxy_val_acc: float | None = None
    # balanced accuracies on val, which a search on imbalanced data ranks by (None in files
    # written before they were kept)
    val_balanced_acc: float | None = None
    proxy_val_balanced_acc: float | None = None
    # a dense task's mean IoU (None for a classifier)
    test_miou: float | None = None
    test_per_class_iou: list | None = None
    val_miou: float | None = None
    proxy_val_miou: float | None = None
    searched: dict = field(default_factory=dict)  # the candidate's searched settings
    epochs_run: int = 0
    train_seconds: float = 0.0
    device: str = ""  # where it trained (``cpu``, ``cuda:0 (NVIDIA H200)``); not in the recipe
    diverged: bool = False
    recipe: dict = field(default_factory=dict)
    finished_at: float = 0.0
    pretrained: dict | None = None  # source, sha256 and coverage of the starting weights
    weights: str = ""  # the trained weights, a safetensors file in the store's weights/ folder
    normalisation: dict | None = None  # the per-channel mean and std its inputs were given
    # the TrainConfig this unit trained with: ``recipe``'s with the candidate's searched lr,
    # weight decay and fine-tuning settings and a from-scratch line's applied (its resolution
    # and augmentation are the data's: ``searched``, else ``recipe``); None in older files
    train_config: dict | None = None
    # the data's fingerprint: which images each split held (None in files written before it)
    split: str | None = None

    @property
    def key(self) -> tuple[tuple[str, str], int]:
        return (unit_of(self.kind, self.label, self.hash), self.seed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfirmRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def unit_of(kind: str, label: str, digest: str) -> tuple[str, str]:
    """What one confirmed row stands for: a baseline by its name (the committed reference
    runs hold hand-design lines with name-derived ids, which count for their names), a search
    trial by its genome and recipe (``TrialRecord.key``), so a trial that samples a hand
    design stays its own row."""
    return (kind, label if kind == "baseline" else digest)


# ---- choosing -------------------------------------------------------------------------------
def search_candidate(record: TrialRecord) -> Candidate:
    label = f"trial {record.trial}" + (f" ({record.name})" if record.name else "")
    return Candidate(label, "search", record.key, record.trial, record.genome,
                     record.val_acc, dict(record.recipe), record.val_balanced_acc,
                     record.val_miou)


def baseline_candidate(name: str) -> Candidate:
    genome = baseline_genome(name)
    return Candidate(name, "baseline", genome.canonical_hash(), genome=genome.to_dict())


def choose(records: list[TrialRecord], objectives: list[tuple[str, str]], *,
           pareto: bool = False, top: int | None = None,
           trials: Iterable[int] = ()) -> list[Candidate]:
    """Search trials to confirm: the Pareto front, the ``top`` by the first maximised
    objective, and/or the trials numbered ``trials``; each network (hash) once."""
    search = [r for r in records if r.kind == "search"]
    chosen: list[TrialRecord] = []
    if pareto:
        chosen += front(records, objectives)
    if top:
        metric = next((m for m, d in objectives if d == "maximize"), None)
        if metric is None:
            raise RunError("--top: this run has no accuracy objective to rank on; use "
                           "--pareto or --trial")
        ranked = sorted((r for r in search if r.feasible_and_trained),
                        key=lambda r: -(r.value(metric) or 0.0))
        chosen += _unique(ranked)[:top]
    by_number = {r.trial: r for r in search}
    for n in trials:
        if n not in by_number:
            raise RunError(f"--trial: {n} is not a finished search trial of this run")
        if by_number[n].genome is None:
            raise RunError(f"--trial: trial {n} has no genome ({by_number[n].status})")
        if by_number[n].status == "infeasible":  # export would refuse what it trained
            why = by_number[n].reason or "over the constraints"
            raise RunError(f"--trial: trial {n} is infeasible ({why}): outside the run's "
                           "constraints, never trained")
        chosen.append(by_number[n])
    return [search_candidate(r) for r in _unique(chosen)]


def _unique(records: list[TrialRecord]) -> list[TrialRecord]:
    seen, out = set(), []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            out.append(r)
    return out


def check_candidates(candidates: list[Candidate], resolution: int, dense: bool = False) -> None:
    """Raise GenomeError for the first candidate that cannot take ``resolution`` px inputs,
    and OptionError for one of another task than the data's (``dense``: masks), before
    anything trains: a misfit fails now, not after hours."""
    for cand in candidates:
        cand.check(resolution)
        check_baseline_task(cand.label, genome_from_dict(cand.genome), dense)


# ---- running --------------------------------------------------------------------------------
def recipe_of(cfg: TrainConfig, data: Dataset, pretrained: Pretrained | None = None) -> dict:
    """What makes two confirmations comparable: the training settings, the data, and the
    starting weights when they are pretrained."""
    # the seed varies by unit; device, threads, compile, memory order and eval batch change
    # results by float rounding only
    ignored = ("seed", "device", "threads", "compile", "channels_last", "eval_batch_size")
    recipe = {**{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ignored},
              "dataset": data.name, "resolution": data.resolution,
              "augment": data.augment.describe(),
              "sampling": "balanced" if cfg.balanced(data) else "uniform", "resize": data.resize,
              "labels_per_class": data.labels_per_class}
    # settings that files written before them did not have: at the value those files ran
    # with, left out, so that they still compare equal
    for key, before in (("backbone_lr_mult", TrainConfig.backbone_lr_mult),
                        ("freeze_epochs", TrainConfig.freeze_epochs),
                        ("freeze_bn", TrainConfig.freeze_bn), ("sampling", "uniform"),
                        ("resize", "squash"), ("init", "official"), ("labels_per_class", None)):
        if recipe[key] == before:
            del recipe[key]
    if pretrained is not None:
        recipe["pretrained"] = pretrained.file.source.label
    return recipe


class ConfirmStore:
    """``confirm.jsonl``: one line per finished (candidate, seed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> list[ConfirmRecord]:
        return [ConfirmRecord.from_dict(d) for d in read_jsonl(self.path, _is_confirm)]

    @property
    def weights_dir(self) -> Path:
        """Where this file's trained weights go: ``weights/`` beside ``confirm.jsonl``,
        ``<stem>-weights/`` beside another file (two files in one folder would else write
        their units' weights to the same names, the later over the earlier)."""
        name = "weights" if self.path.name == CONFIRM_FILE else f"{self.path.stem}-weights"
        return self.path.parent / name

    def _unit_name(self, cand: Candidate, seed: int) -> str:
        unit = hashlib.sha256(f"{cand.kind}:{cand.hash}".encode()).hexdigest()[:10]
        return f"{safe_name(cand.label, 60)}-{unit}-seed{seed}"

    def save_weights(self, model: torch.nn.Module, cand: Candidate, seed: int) -> str:
        """Write a trained model's state dict as safetensors (atomically); its file name."""
        name = f"{self._unit_name(cand, seed)}.safetensors"
        write_state_dict(model.state_dict(), self.weights_dir / name)
        return name

    def state_path(self, cand: Candidate, seed: int) -> Path:
        """A unit's training state after its last finished epoch (``train``'s
        ``report.state()`` and the recipe), replaced each epoch and deleted once the unit is
        recorded: an interrupted confirmation goes on from there."""
        return self.weights_dir / f"{self._unit_name(cand, seed)}.state.pt"

    def saved_state(self, cand: Candidate, seed: int, key: dict) -> dict | None:
        """The training state to resume ``(cand, seed)`` from: the one saved with ``key`` (the
        recipe and the data's fingerprint), else None (none, another's, unreadable)."""
        saved = load_train_state(self.state_path(cand, seed), key)
        return saved["train"] if saved is not None else None

    def best_weights(self, records: list[ConfirmRecord], kind: str,
                     digest: str) -> ConfirmRecord | None:
        """Of ``records`` (this store's), the confirmation of a unit whose weights file exists
        and whose val accuracy is the highest (chosen on val only: the test split plays no
        part)."""
        found = [r for r in records if (r.kind, r.hash) == (kind, digest) and r.weights
                 and (self.weights_dir / r.weights).is_file()]
        return max(found, key=lambda r: (r.val_acc, -r.seed), default=None)

    def _lock(self):
        """The lock that every process sharing this file takes to append or claim (its
        folder made first: ``--out`` may name a new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return file_lock(self.path.with_name(self.path.name + ".lock"))

    @property
    def claims(self) -> Claims:
        return Claims(self.path.with_name(self.path.name + ".claims"))

    def append(self, record: ConfirmRecord) -> None:
        """Append one record (several confirmations may share the file)."""
        with self._lock():
            append_line(self.path, dataclasses.asdict(record))

    def check_recipe(self, recipe: dict, split: str | None = None) -> None:
        """Refuse to mix recipes, or splits (``Dataset.fingerprint``), in one file."""
        _check_recipe(self.path, self.records(), recipe, split)

    def take(self, todo: list[tuple[Candidate, int]], recipe: dict,
             split: str | None = None) -> tuple[tuple[Candidate, int] | None, list[dict]]:
        """In one step across processes: the first unit of ``todo`` that this file does not
        hold and no live process trains, claimed for this process (None when there is none),
        and the claims of the other processes on the units of ``todo`` not finished yet."""
        with self._lock():
            records = self.records()
            _check_recipe(self.path, records, recipe, split)  # one may have appended since
            done = {r.key for r in records}
            claims = self.claims.live()
            _check_claims_recipe(self.path, claims, recipe, split)
            held = []
            for cand, seed in todo:
                key = _claim_key(cand.unit, seed)
                if (cand.unit, seed) in done:
                    continue
                if key in claims and not is_mine(claims[key]):
                    held.append(claims[key])
                    continue
                claims[key] = {**this_process(), "recipe": recipe, "split": split}
                self.claims.write(claims)
                return (cand, seed), held
            return None, held

    def release(self, unit: tuple[str, str], seed: int) -> None:
        """Drop this process's claim on a unit (finished, or given up)."""
        with self._lock():
            self.claims.release(_claim_key(unit, seed))


def _claim_key(unit: tuple[str, str], seed: int) -> str:
    return json.dumps([*unit, seed])


# settings since removed, at the one value every run now has: files written with them (the
# committed reference runs) still compare equal
REMOVED = {"balanced_loss": False}


def _check_recipe(path: Path, records: list[ConfirmRecord], recipe: dict,
                  split: str | None = None) -> None:
    for r in records:
        if split is not None and r.split not in (None, split):
            raise RunError(f"{path}: its units were tested on other images (the folder "
                           "changed since, or another split seed or fraction); confirm on the "
                           "same split, or --out for a new confirmation file")
        old = {k: v for k, v in r.recipe.items() if REMOVED.get(k, ...) != v}
        if old != recipe:
            diff = {k: (old.get(k), recipe.get(k)) for k in sorted(old.keys() | recipe.keys())
                    if old.get(k) != recipe.get(k)}
            changes = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise RunError(f"{path}: made with another recipe ({changes}); use the "
                           "same options, or --out for a new confirmation file")


def _check_claims_recipe(path: Path, claims: dict[str, dict], recipe: dict,
                         split: str | None = None) -> None:
    """A process training into the same file with another recipe, or on another split, is
    refused too, before its first record is there to compare with."""
    for claim in claims.values():
        if is_mine(claim):
            continue
        other = "another recipe" if claim.get("recipe") != recipe else \
            "other images (another split)" if split and claim.get("split") not in (None, split) \
            else None
        if other:
            raise RunError(f"{path}: process {claim.get('pid')} on {claim.get('host')} is "
                           f"confirming into it with {other}; use the same options and data, "
                           "or --out for a new confirmation file")


def _is_confirm(data: dict) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return (all(isinstance(data.get(k), str) for k in ("label", "kind", "hash"))
            and type(data.get("seed")) is int and isinstance(data.get("recipe"), dict)
            and all(number(data.get(k)) for k in ("macs", "params", "val_acc", "test_acc",
                                                   "test_balanced_acc")))


def confirm(candidates: list[Candidate], seeds: list[int], data: Dataset, cfg: TrainConfig,
            store: ConfirmStore,
            on_done: Callable[[ConfirmRecord, int, int], None] | None = None,
            data_at: Callable[[int], Dataset] | None = None,
            pretrained: Pretrained | None = None,
            on_wait: Callable[[list[dict]], None] | None = None,
            poll: float = 2.0,
            on_epoch: Callable[[Candidate, int, EpochReport], None] | None = None,
            ) -> list[ConfirmRecord]:
    """Train every candidate with every seed that ``store`` does not hold yet, evaluate it
    once on the test split, and append the record. Returns all records of the store.
    ``data_at(resolution)``: the same data at another resolution, for a candidate whose
    resolution was searched. ``pretrained``: the weights the search's trials started from;
    each candidate inherits the tensors that match, as its trial did.

    A unit that another live process has claimed is left to it; when only such units are
    left, this one waits for them (polling every ``poll`` s; ``on_wait`` is told the claims
    when their number changes), taking up any whose process dies. Units claimed on another
    machine are not waited for. ``on_epoch(candidate, seed, report)`` hears each epoch of
    the unit in training (a progress display)."""
    check_candidates(candidates, data.resolution, data.dense)
    recipe, split = recipe_of(cfg, data, pretrained), data.fingerprint()
    store.check_recipe(recipe, split)
    # what a unit's saved state must match to be resumed: the recipe and the split's images
    state_key = {"recipe": recipe, "data": split}
    todo = [(c, s) for c in candidates for s in seeds]
    done = {r.key for r in store.records()}
    for cand, seed in todo:  # a crash between a unit's record and its state's removal
        if (cand.unit, seed) in done:
            store.state_path(cand, seed).unlink(missing_ok=True)
    total = sum((c.unit, s) not in done for c, s in todo)
    device = resolve_device(cfg.device)

    def train_unit(cand: Candidate, seed: int) -> ConfirmRecord:
        resolution = cand.searched.get("resolution", data.resolution)
        if resolution == data.resolution:
            cand_data = data
        elif data_at is not None:
            cand_data = data_at(resolution)
        else:
            raise RunError(f"{cand.label}: trained at {resolution} px, and no data at that "
                           "resolution was given")
        torch.manual_seed(seed)  # the seed fixes the initial weights too
        model = cand.build(data.num_classes, data.in_chans, cfg)
        report = pretrained.load_into(model, require_match=False) if pretrained else None
        cost = model_cost(model, (data.in_chans, resolution, resolution))
        loaded = report is not None or getattr(model, "transfer_report", None) is not None
        def heard(report: EpochReport) -> None:
            save_train_state(store.state_path(cand, seed), state_key, report.state())
            if on_epoch is not None:
                on_epoch(cand, seed, report)

        unit_cfg = from_scratch(cand.config(cfg, seed), loaded or cand.kind != "baseline")
        result = train(model, cand.data(cand_data), unit_cfg, heard,
                       resume=store.saved_state(cand, seed, state_key))
        test = evaluate(model, make_loader(cand_data, "test", cfg.eval_batch_size, device,
                                           train=False, seed=seed,
                                           channels_last=cfg.channels_last),
                        data.num_classes, autocast=device.type == "cuda")
        return ConfirmRecord(
            label=cand.label, kind=cand.kind, hash=cand.hash, seed=seed, trial=cand.trial,
            macs=int(cost.macs), params=int(cost.params), val_acc=result.val_acc,
            test_acc=test.acc, test_balanced_acc=test.balanced_acc, test_macro_f1=test.macro_f1,
            test_per_class_recall=test.per_class_recall, test_confusion=test.confusion,
            proxy_val_acc=cand.proxy_val_acc, searched=cand.searched,
            val_balanced_acc=result.val.balanced_acc if result.val is not None else None,
            proxy_val_balanced_acc=cand.proxy_val_balanced_acc,
            test_miou=getattr(test, "miou", None),
            test_per_class_iou=getattr(test, "per_class_iou", None),
            val_miou=getattr(result.val, "miou", None), proxy_val_miou=cand.proxy_val_miou,
            epochs_run=result.epochs_run,
            train_seconds=result.train_seconds, device=result.device, diverged=result.diverged,
            recipe=recipe, finished_at=time.time(),
            pretrained=report.to_record(detail=False) if report is not None else None,
            weights=store.save_weights(model, cand, seed),
            normalisation={"mean": list(cand_data.mean), "std": list(cand_data.std)},
            train_config=dataclasses.asdict(unit_cfg), split=split)

    trained, waiting_for = 0, -1
    while True:
        unit, held = store.take(todo, recipe, split)
        if unit is None:
            if on_wait is not None and held and len(held) != waiting_for:
                on_wait(held)
            waiting_for = len(held)
            if not any(is_local(c) for c in held):
                break
            time.sleep(poll)
            continue
        cand, seed = unit
        try:
            record = train_unit(cand, seed)
            store.append(record)
            store.state_path(cand, seed).unlink(missing_ok=True)  # recorded: spent
        finally:  # finished, failed or interrupted: the unit is no longer in training here
            store.release(cand.unit, seed)
        trained += 1
        if on_done is not None:
            on_done(record, trained, total)
    return store.records()


# ---- summaries ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Confirmed:
    """One candidate's figures over its seeds."""

    label: str
    kind: str
    hash: str
    trial: int | None
    macs: int
    params: int
    seeds: list[int]
    test_acc: tuple[float, float, float]  # mean, min, max
    test_balanced_acc: tuple[float, float, float]
    val_acc: float  # mean over seeds
    proxy_val_acc: float | None
    test_macro_f1: float = 0.0  # mean over seeds
    # ``learnt_little`` of the test predictions of every seed together: None, or a warning
    warning: str | None = None
    val_balanced_acc: float | None = None  # mean over seeds; None when a record lacks it
    proxy_val_balanced_acc: float | None = None
    test_miou: tuple[float, float, float] | None = None  # a dense task's
    val_miou: float | None = None
    proxy_val_miou: float | None = None

    def val(self, metric: str) -> tuple[float | None, float | None]:
        """The confirmation's and the search's val figure of ``metric`` (``val_acc``,
        ``val_balanced_acc`` or ``val_miou``: the accuracy a run ranks by)."""
        if metric == "val_balanced_acc":
            return self.val_balanced_acc, self.proxy_val_balanced_acc
        if metric == "val_miou":
            return self.val_miou, self.proxy_val_miou
        return self.val_acc, self.proxy_val_acc

    def test(self, metric: str) -> tuple[float, float, float]:
        """The test figure (mean, lowest and highest seed) that matches the val ``metric``."""
        if metric == "val_balanced_acc":
            return self.test_balanced_acc
        if metric == "val_miou" and self.test_miou is not None:
            return self.test_miou
        return self.test_acc

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(records: list[ConfirmRecord],
              class_names: list[str] | None = None) -> list[Confirmed]:
    """Per candidate (in order of cost): mean, min and max over seeds, and the warning of a
    candidate that learnt little (naming ``class_names`` when given). A (candidate, seed)
    recorded twice (by two confirmations of an older dla-nas) counts once: its first record."""
    groups: dict[tuple[str, str], list[ConfirmRecord]] = {}
    seen: set = set()
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            groups.setdefault(r.key[0], []).append(r)
    out = []
    for rs in groups.values():
        first = rs[0]
        balanced = [r.val_balanced_acc for r in rs]
        mious, val_mious = [r.test_miou for r in rs], [r.val_miou for r in rs]
        out.append(Confirmed(
            first.label, first.kind, first.hash, first.trial, first.macs, first.params,
            sorted(r.seed for r in rs), _spread([r.test_acc for r in rs]),
            _spread([r.test_balanced_acc for r in rs]),
            sum(r.val_acc for r in rs) / len(rs), first.proxy_val_acc,
            sum(r.test_macro_f1 for r in rs) / len(rs), _learnt_little(rs, class_names),
            None if None in balanced else math.fsum(balanced) / len(balanced),
            first.proxy_val_balanced_acc,
            None if None in mious else _spread(mious),
            None if None in val_mious else math.fsum(val_mious) / len(val_mious),
            first.proxy_val_miou))
    return sorted(out, key=lambda c: (c.macs, c.label))


def _learnt_little(records: list[ConfirmRecord], class_names: list[str] | None) -> str | None:
    """``learnt_little`` of the seeds' test confusion matrices added up (records without
    one, from an older dla-nas: None)."""
    matrices = [r.test_confusion for r in records]
    if not all(matrices) or len({len(m) for m in matrices}) != 1:
        return None
    unit = "pixels" if records[0].test_miou is not None else "images"
    return learnt_little([[sum(cells) for cells in zip(*rows)] for rows in zip(*matrices)],
                         class_names, unit)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return (math.fsum(values) / len(values), min(values), max(values))


def load_confirmed(run: str | Path) -> list[Confirmed]:
    """The confirmed figures of a run folder (empty when it has no ``confirm.jsonl``)."""
    names = (RunStore(run).info().get("data") or {}).get("class_names")
    return summarize(ConfirmStore(Path(run) / CONFIRM_FILE).records(), names)


def load_line(other: str | Path, run: str | Path) -> list[Confirmed]:
    """The confirmed baselines of run ``other`` (say, an earlier search on the same data),
    as the line to compare ``run``'s confirmed front with; ``RunError`` unless both were
    confirmed with one recipe (data, resolution, steps, ...) and, where their records say it,
    on one split."""
    theirs = [r for r in ConfirmStore(Path(other) / CONFIRM_FILE).records()
              if r.kind == "baseline"]
    if not theirs:
        raise RunError(f"{other}: no confirmed baseline (confirm it with --baselines)")
    ours = ConfirmStore(Path(run) / CONFIRM_FILE).records()
    for r in ours[:1]:  # a file has one recipe
        diff = sorted(k for k in r.recipe.keys() | theirs[0].recipe.keys()
                      if r.recipe.get(k) != theirs[0].recipe.get(k))
        if diff:
            raise RunError(f"{other}: confirmed with another recipe than {run} (it differs in "
                           f"{', '.join(diff)}): its line does not compare")
    if len({u.split for u in [*ours, *theirs]} - {None}) > 1:  # None: written before it
        raise RunError(f"{other}: tested on other images than {run} (another split): its line "
                       "does not compare")
    return summarize(theirs, (RunStore(other).info().get("data") or {}).get("class_names"))


def run_candidates(run: str | Path, *, pareto: bool, top: int | None, trials: list[int],
                   baselines: list[str]) -> list[Candidate]:
    """The candidates that ``dla-nas confirm`` was asked for, from a run folder."""
    store = RunStore(run)
    info = store.info()
    records = load_run(run)
    chosen = choose(records, run_objectives(info), pareto=pareto, top=top, trials=trials)
    if (pareto or top or trials) and not chosen:
        raise RunError(f"{run}: no trained, feasible search trial to confirm")
    return chosen + [baseline_candidate(n) for n in baselines]



def check_run_data(run: str | Path, data: Dataset) -> None:
    """Refuse data that differ from those the run searched on (run.yaml's ``data``: class
    names, channels), before anything trains: a class added, removed or renamed would be
    trained and tested on without a word."""
    expected = RunStore(run).data()
    diffs = data.differences(expected)
    if diffs:
        names = expected.get("class_names")
        names = ", ".join(map(str, names)) if isinstance(names, list) \
            else f"{expected.get('num_classes')} classes"
        raise DataError(f"{data.name}: not the data that {RunStore(run).run_yaml} was searched "
                        f"on ({'; '.join(diffs)}); confirm on the same data ({names}, "
                        f"{expected.get('in_chans')} channel(s))")


# ---- the front against the hand-designed line -------------------------------------------------
def hand_design_hashes(run: str | Path) -> set[str]:
    """Genome hashes of the hand designs that a run's search trials may have drawn: the
    line's (``LINE``) and its space's ``baselines`` (its warm start)."""
    info = RunStore(run).info()
    own = SearchSpace.of_run(info) if info.get("space") else None
    return {baseline_genome(n).canonical_hash() for n in LINE} | (
        {own.hand_design(n).canonical_hash() for n in own.baselines} if own else set())


def compare_with_line(confirmed: list[Confirmed], hand_designs: Iterable[str] = (),
                      share: float = 0.5, point_macs: float = 1.0,
                      metric: str = "val_acc") -> dict[str, Any]:
    """Does the confirmed front beat the hand-designed line? On the mean test figure over
    seeds that matches ``metric`` (``Confirmed.test``: accuracy, balanced accuracy or mIoU;
    the rows name it ``test_acc``, ``test_balanced_acc`` or ``test_miou``), against the best
    hand design (the baseline of highest mean; a confirmed search trial
    that drew one of ``hand_designs`` is a baseline too):

    - ``half_macs``: a search candidate reaches its mean at <= ``share`` of its MACs;
    - ``one_point``: one beats its mean by >= 1 point at <= ``point_macs`` x its MACs, its
      lowest seed above the hand design's highest;
    - ``hypervolume``: of (mean test accuracy, log10 MACs) for the confirmed search candidates
      and for the baselines, against one reference point: 0.01 below the lowest mean, and
      log10 of 1.1 x the largest MACs.

    ``gap`` is the best mean of the candidates within ``share`` of the MACs minus the hand
    design's (negative: short of the target). A search trial that drew a hand design (the
    warm start does) is no finding: one whose genome is a confirmed baseline's or in
    ``hand_designs`` (genome hashes, ``hand_design_hashes``) is left out of the
    candidates."""
    hand = {c.hash for c in confirmed if c.kind == "baseline"} | set(hand_designs)
    line = [c for c in confirmed if c.kind == "baseline" or c.hash.split("@")[0] in hand]
    found = [c for c in confirmed if c not in line]
    if not line or not found:
        raise RunError("compare: needs confirmed baselines and confirmed search trials that "
                       "are not hand designs")
    test = {id(c): c.test(metric) for c in confirmed}  # (mean, lowest, highest)
    best = max(line, key=lambda c: test[id(c)][0])
    top = test[id(best)]
    half = [c for c in found if c.macs <= best.macs * share]
    one_point = [c for c in found if c.macs <= best.macs * point_macs
                 and test[id(c)][0] >= top[0] + 0.01 and test[id(c)][1] > top[2]]
    reference = [min(t[0] for t in test.values()) - 0.01,
                 math.log10(1.1 * max(c.macs for c in confirmed))]

    def volume(cs: list[Confirmed]) -> float:
        return hypervolume([[test[id(c)][0], math.log10(c.macs)] for c in cs],
                           ["maximize", "minimize"], reference)

    def row(c: Confirmed) -> dict[str, Any]:  # the figure as [mean, lowest, highest]
        return {"label": c.label, "macs": c.macs, "seeds": len(c.seeds),
                f"test_{metric.removeprefix('val_')}": list(test[id(c)])}

    ranks = non_dominated_sort([[test[id(c)][0], c.macs] for c in found],
                               ["maximize", "minimize"])
    return {
        "best_hand_design": row(best),
        "front": [row(c) for c, k in zip(found, ranks) if k == 0],
        "half_macs": [row(c) for c in half if test[id(c)][0] >= top[0]],
        "one_point": [row(c) for c in one_point],
        "gap": (max(test[id(c)][0] for c in half) - top[0]) if half else None,
        "hypervolume": {"front": volume(found), "line": volume(line), "reference": reference},
    }
