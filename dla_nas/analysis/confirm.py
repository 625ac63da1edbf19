"""Confirmation of a search: retrain chosen trials and hand-designed baselines with several
seeds at full fidelity, and evaluate each once on the test split, which the search never saw.

Every finished (candidate, seed) is one line of ``confirm.jsonl`` in the run folder, appended
and flushed at once, so a killed confirmation loses at most the unit in training, and the same
command continues it without retraining anything that finished. A rerun with another recipe
is refused: its figures would not be comparable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..arch.baselines import LINE, baseline_genome
from ..arch.builder import build_model
from ..arch.cost import model_cost
from ..arch.genome import Genome
from ..data import Dataset, make_loader
from ..dominance import non_dominated_sort
from ..errors import RunError
from ..files import safe_name
from ..results import RunStore, TrialRecord, append_line, file_lock, load_run, read_jsonl
from ..search.space import with_recipe
from ..train.trainer import TrainConfig, evaluate, resolve_device, train
from ..weights import Pretrained
from ..weights.loading import write_state_dict
from .pareto import front, hypervolume, run_objectives

CONFIRM_FILE = "confirm.jsonl"


@dataclass(frozen=True)
class Candidate:
    """A network to confirm: a search trial (``trial``) or a baseline (``label`` is its
    name), with its genome. ``searched``: the training settings searched with the trial's
    genome (resolution, lr, weight_decay), which replace the confirmation's own; ``hash``
    then names both (``TrialRecord.key``)."""

    label: str
    kind: str  # "search" or "baseline"
    hash: str
    trial: int | None = None
    genome: dict | None = None
    proxy_val_acc: float | None = None
    searched: dict = field(default_factory=dict)

    def build(self, num_classes: int, in_chans: int, zero_init_residual: bool):
        return build_model(Genome.from_dict(self.genome), num_classes, in_chans,
                           zero_init_residual=zero_init_residual)

    @property
    def unit(self) -> tuple[str, str]:
        return unit_of(self.kind, self.label, self.hash)

    def check(self, resolution: int) -> None:
        """Raise GenomeError when the network cannot take its inputs: ``resolution`` px, or
        its searched resolution."""
        Genome.from_dict(self.genome).feature_sizes(self.searched.get("resolution", resolution))

    def config(self, cfg: TrainConfig, seed: int) -> TrainConfig:
        """``cfg`` with this seed and the searched lr and weight decay."""
        return with_recipe(dataclasses.replace(cfg, seed=seed), self.searched)


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

    @property
    def key(self) -> tuple[tuple[str, str], int]:
        return (unit_of(self.kind, self.label, self.hash), self.seed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfirmRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def unit_of(kind: str, label: str, digest: str) -> tuple[str, str]:
    """What one confirmed row stands for: a baseline by its name (a 0.1 line of a hand
    design, with a name-derived id, counts for its name), a search trial by its genome and
    recipe (``TrialRecord.key``), so a trial that samples a hand design stays its own row."""
    return (kind, label if kind == "baseline" else digest)


# ---- choosing -------------------------------------------------------------------------------
def search_candidate(record: TrialRecord) -> Candidate:
    label = f"trial {record.trial}" + (f" ({record.name})" if record.name else "")
    return Candidate(label, "search", record.key, record.trial, record.genome,
                     record.val_acc, dict(record.recipe))


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
        chosen.append(by_number[n])
    return [search_candidate(r) for r in _unique(chosen)]


def _unique(records: list[TrialRecord]) -> list[TrialRecord]:
    seen, out = set(), []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            out.append(r)
    return out


def check_candidates(candidates: list[Candidate], resolution: int) -> None:
    """Raise GenomeError for the first candidate that cannot take ``resolution`` px inputs,
    before anything trains: a misfit fails now, not after hours."""
    for cand in candidates:
        cand.check(resolution)


# ---- running --------------------------------------------------------------------------------
def recipe_of(cfg: TrainConfig, data: Dataset, pretrained: Pretrained | None = None) -> dict:
    """What makes two confirmations comparable: the training settings, the data, and the
    starting weights when they are pretrained."""
    # the seed varies by unit; device, threads, compile and eval batch do not change results
    ignored = ("seed", "device", "threads", "compile", "eval_batch_size")
    recipe = {**{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ignored},
              "dataset": data.name, "resolution": data.resolution,
              "augment": data.augment.describe()}
    for key in ("backbone_lr_mult", "freeze_epochs", "freeze_bn"):  # fine-tuning only: files
        if recipe[key] == getattr(TrainConfig, key):  # written before it still compare equal
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
        return self.path.parent / "weights"

    def save_weights(self, model: torch.nn.Module, cand: Candidate, seed: int) -> str:
        """Write a trained model's state dict as safetensors (atomically); its file name."""
        unit = hashlib.sha256(f"{cand.kind}:{cand.hash}".encode()).hexdigest()[:10]
        name = f"{safe_name(cand.label, 60)}-{unit}-seed{seed}.safetensors"
        write_state_dict(model.state_dict(), self.weights_dir / name)
        return name

    def best_weights(self, records: list[ConfirmRecord], kind: str,
                     digest: str) -> ConfirmRecord | None:
        """Of ``records`` (this store's), the confirmation of a unit whose weights file exists
        and whose val accuracy is the highest (chosen on val only: the test split plays no
        part)."""
        found = [r for r in records if (r.kind, r.hash) == (kind, digest) and r.weights
                 and (self.weights_dir / r.weights).is_file()]
        return max(found, key=lambda r: (r.val_acc, -r.seed), default=None)

    def append(self, record: ConfirmRecord) -> None:
        """Append one record (several confirmations may share the file)."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            append_line(self.path, dataclasses.asdict(record))

    def check_recipe(self, recipe: dict) -> None:
        """Refuse to mix recipes in one file."""
        for r in self.records():
            if r.recipe != recipe:
                diff = {k: (r.recipe.get(k), v) for k, v in recipe.items() if r.recipe.get(k) != v}
                changes = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
                raise RunError(f"{self.path}: made with another recipe ({changes}); use the "
                               "same options, or --out for a new confirmation file")


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
            pretrained: Pretrained | None = None) -> list[ConfirmRecord]:
    """Train every candidate with every seed that ``store`` does not hold yet, evaluate it
    once on the test split, and append the record. Returns all records of the store.
    ``data_at(resolution)``: the same data at another resolution, for a candidate whose
    resolution was searched. ``pretrained``: the weights the search's trials started from;
    each candidate inherits the tensors that match, as its trial did."""
    check_candidates(candidates, data.resolution)
    recipe = recipe_of(cfg, data, pretrained)
    store.check_recipe(recipe)
    done = {r.key for r in store.records()}
    todo = [(c, s) for c in candidates for s in seeds if (c.unit, s) not in done]
    device = resolve_device(cfg.device)
    for i, (cand, seed) in enumerate(todo):
        resolution = cand.searched.get("resolution", data.resolution)
        if resolution == data.resolution:
            cand_data = data
        elif data_at is not None:
            cand_data = data_at(resolution)
        else:
            raise RunError(f"{cand.label}: trained at {resolution} px, and no data at that "
                           "resolution was given")
        torch.manual_seed(seed)  # the seed fixes the initial weights too
        model = cand.build(data.num_classes, data.in_chans, cfg.zero_init_residual)
        report = pretrained.load_into(model, require_match=False) if pretrained else None
        cost = model_cost(model, (data.in_chans, resolution, resolution))
        result = train(model, cand_data, cand.config(cfg, seed))
        test = evaluate(model, make_loader(cand_data, "test", cfg.eval_batch_size, device,
                                           train=False, seed=seed,
                                           channels_last=device.type == "cuda"),
                        data.num_classes, autocast=device.type == "cuda")
        record = ConfirmRecord(
            label=cand.label, kind=cand.kind, hash=cand.hash, seed=seed, trial=cand.trial,
            macs=int(cost.macs), params=int(cost.params), val_acc=result.val_acc,
            test_acc=test.acc, test_balanced_acc=test.balanced_acc, test_macro_f1=test.macro_f1,
            test_per_class_recall=test.per_class_recall, test_confusion=test.confusion,
            proxy_val_acc=cand.proxy_val_acc, searched=cand.searched,
            epochs_run=result.epochs_run,
            train_seconds=result.train_seconds, device=result.device, diverged=result.diverged,
            recipe=recipe, finished_at=time.time(),
            pretrained=report.to_record(detail=False) if report is not None else None,
            weights=store.save_weights(model, cand, seed),
            normalisation={"mean": list(cand_data.mean), "std": list(cand_data.std)})
        store.append(record)
        if on_done is not None:
            on_done(record, i + 1, len(todo))
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(records: list[ConfirmRecord]) -> list[Confirmed]:
    """Per candidate (in order of cost): mean, min and max over seeds."""
    groups: dict[str, list[ConfirmRecord]] = {}
    for r in records:
        groups.setdefault(unit_of(r.kind, r.label, r.hash), []).append(r)
    out = []
    for rs in groups.values():
        first = rs[0]
        out.append(Confirmed(
            first.label, first.kind, first.hash, first.trial, first.macs, first.params,
            sorted(r.seed for r in rs), _spread([r.test_acc for r in rs]),
            _spread([r.test_balanced_acc for r in rs]),
            sum(r.val_acc for r in rs) / len(rs), first.proxy_val_acc))
    return sorted(out, key=lambda c: (c.macs, c.label))


def _spread(values: list[float]) -> tuple[float, float, float]:
    return (math.fsum(values) / len(values), min(values), max(values))


def load_confirmed(run: str | Path) -> list[Confirmed]:
    """The confirmed figures of a run folder (empty when it has no ``confirm.jsonl``)."""
    return summarize(ConfirmStore(Path(run) / CONFIRM_FILE).records())


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



# ---- the front against the hand-designed line -------------------------------------------------
def hand_design_hashes(run: str | Path) -> set[str]:
    """Genome hashes of the hand designs that a run's search trials may have drawn: the
    line's (``LINE``) and its space's ``baselines`` (its warm start)."""
    space = RunStore(run).info().get("space") or {}
    return {baseline_genome(n).canonical_hash() for n in {*LINE, *space.get("baselines", [])}}


def compare_with_line(confirmed: list[Confirmed],
                      hand_designs: Iterable[str] = ()) -> dict[str, Any]:
    """Does the confirmed front beat the hand-designed line? On mean test accuracy over seeds,
    against the best hand design (the baseline of highest mean):

    - ``half_macs``: a search candidate reaches its mean at <= 1/2 its MACs;
    - ``one_point``: one beats its mean by >= 1 point at <= its MACs, its lowest seed above
      the hand design's highest;
    - ``hypervolume``: of (mean test accuracy, log10 MACs) for the confirmed search candidates
      and for the baselines, against one reference point: 0.01 below the lowest mean, and
      log10 of 1.1 x the largest MACs.

    ``gap`` is the best mean of the candidates within half the MACs minus the hand design's
    (negative: short of the target). A search trial that drew a hand design (the warm start
    does) is no finding: one whose genome is a confirmed baseline's or in ``hand_designs``
    (genome hashes, ``hand_design_hashes``) is left out of the candidates."""
    line = [c for c in confirmed if c.kind == "baseline"]
    hand = {c.hash for c in line} | set(hand_designs)
    found = [c for c in confirmed if c.kind == "search" and c.hash.split("@")[0] not in hand]
    if not line or not found:
        raise RunError("compare: needs confirmed baselines and confirmed search trials that "
                       "are not hand designs")
    best = max(line, key=lambda c: c.test_acc[0])
    half = [c for c in found if c.macs <= best.macs / 2]
    one_point = [c for c in found if c.macs <= best.macs and c.test_acc[0] >= best.test_acc[0]
                 + 0.01 and c.test_acc[1] > best.test_acc[2]]
    reference = [min(c.test_acc[0] for c in confirmed) - 0.01,
                 math.log10(1.1 * max(c.macs for c in confirmed))]

    def volume(cs: list[Confirmed]) -> float:
        return hypervolume([[c.test_acc[0], math.log10(c.macs)] for c in cs],
                           ["maximize", "minimize"], reference)

    def row(c: Confirmed) -> dict[str, Any]:
        return {"label": c.label, "macs": c.macs, "test_acc": list(c.test_acc)}

    ranks = non_dominated_sort([[c.test_acc[0], c.macs] for c in found], ["maximize", "minimize"])
    return {
        "best_hand_design": row(best),
        "front": [row(c) for c, k in zip(found, ranks) if k == 0],
        "half_macs": [row(c) for c in half if c.test_acc[0] >= best.test_acc[0]],
        "one_point": [row(c) for c in one_point],
        "gap": (max(c.test_acc[0] for c in half) - best.test_acc[0]) if half else None,
        "hypervolume": {"front": volume(found), "line": volume(line), "reference": reference},
    }
