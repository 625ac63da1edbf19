"""The trial lifecycle, written once for both backends: the run's study and its warm start,
a proposal (genome, repairs, recipe, hash, key) drawn from a study trial, running it (every
error becomes a failed record), and telling the sampler. A backend only schedules: the
Optuna backend's workers and the Ray searcher and trainable call these.

The study lives in the run folder (``RunStore.journal``, or ``--storage``) and is built in
the process that uses it, never pickled: a sampler may hold locks (Optuna 5.1's NSGA-II
does), and a study is a storage connection."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import optuna
from optuna.trial import TrialState

from .. import __version__
from ..arch.backbone_genome import genome_from_dict
from ..results import RunStore, TrialRecord, trial_key
from ..train.checkpoint import load_train_state, save_train_state
from ..train.trainer import EpochReport
from .core import (
    SearchOptions,
    constraint_values,
    enqueue_points,
    journal_storage,
    journal_study,
    make_sampler,
    objective_values,
    sampler_seed,
    warm_start_points,
)
from .evaluator import ProxyEvaluator
from .space import Recipe, SearchSpace

NAME = "name"  # the study trial's user attribute that names an enqueued network's record


class SchedulingError(Exception):
    """Raised by a backend when scheduling failed, not the trial (a report that could not be
    sent): it passes through ``run`` instead of becoming the trial's failed record."""


class PastDeadline(SchedulingError):
    """The search's ``--timeout`` passed while a trial trained: the trial ends after its
    epoch, leaves no record and is drawn again when the run goes on."""


def check_deadline(deadline: float | None, trial: int, report: EpochReport) -> None:
    """Raise ``PastDeadline`` once ``deadline`` (a ``time.time()``, or None) has passed; a
    backend calls it after each epoch of a trial. A trial whose last epoch is done is kept."""
    if deadline is not None and time.time() >= deadline and report.epoch < report.epochs:
        raise PastDeadline(f"--timeout passed in epoch {report.epoch} of trial {trial}")


@dataclass
class SavedTraining:
    """A trial's proxy training, saved after each epoch so that its retry (Ctrl-C, a kill,
    ``--timeout``, a restored Ray experiment) goes on from the last epoch, its wall time
    counting the seconds spent up to that epoch, not the time between the attempts. A state
    serves only the same genome and recipe, the same split images (a folder may gain some
    between runs) and the code that saved it; a backend chooses where it lies."""

    record: TrialRecord
    key: dict[str, str]

    @classmethod
    def of(cls, evaluator: ProxyEvaluator, record: TrialRecord) -> SavedTraining:
        return cls(record, {"trial": record.key, "data": evaluator.data_fingerprint,
                            "version": __version__})

    def resume(self, paths: Iterable[Path]) -> dict | None:
        """The trainer state to go on from: the newest of this key among ``paths`` (the
        others, and unreadable files, are passed by), or None; moves the record's start back
        by the wall seconds the state had taken."""
        states = [st for st in (load_train_state(path, self.key) for path in paths)
                  if st is not None]
        saved = max(states, key=lambda st: st["train"]["epoch"], default=None)
        if saved is None:
            return None
        # a state saved before ``elapsed`` was kept: its training seconds (most of the wall)
        spent = saved.get("elapsed", saved["train"].get("train_time", 0.0))
        self.record.started_at = time.time() - spent
        return saved["train"]

    def save(self, path: Path, state: dict) -> None:
        """Write a trainer ``report.state()`` at ``path``, replacing the last one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        save_train_state(path, self.key, state, elapsed=time.time() - self.record.started_at)


@dataclass
class Proposal:
    """One trial to run: what the sampler drew, as plain data (a Ray config carries it)."""

    number: int  # the trial number of its record
    hash: str = ""
    key: str = ""  # the genome and its recipe (``TrialRecord.key``): equal keys train alike
    genome: dict[str, Any] | None = None
    repairs: list[str] = field(default_factory=list)
    recipe: Recipe = field(default_factory=Recipe)  # the searched training settings
    error: str = ""  # the space could not make a genome of the draw
    name: str = ""  # an enqueued network's (``--enqueue``), else its record's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Proposal":
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**{**fields, "recipe": Recipe(**fields.get("recipe", {}))})

    def record_fields(self) -> dict[str, Any]:
        """The fields of its record that are known before it runs."""
        named = {"name": self.name} if self.name else {}
        return {"hash": self.hash, "genome": self.genome, "repairs": list(self.repairs),
                "recipe": self.recipe.to_dict(), **named}


def propose(space: SearchSpace, trial: optuna.Trial, resolution: int,
            number: int | None = None) -> Proposal:
    """Draw a trial's genome and recipe from the space (``SearchSpace.sample_trial``); a draw
    the space cannot build (or a bug in drawing it) is a proposal with ``error``, which
    ``run`` records as failed. ``number``: the record's trial number (default: the study
    trial's)."""
    number = trial.number if number is None else number
    name = trial.user_attrs.get(NAME, "")
    try:
        genome, repairs, recipe = space.sample_trial(trial, resolution)
    except Exception as exc:  # one bad draw (a SpaceError, or a bug) must not stop the search
        return Proposal(number, error=f"{type(exc).__name__}: {exc}", name=name)
    digest = genome.canonical_hash()
    return Proposal(number, digest, trial_key(digest, recipe.to_dict()), genome.to_dict(),
                    repairs, recipe, name=name)


def run(evaluator: ProxyEvaluator, proposal: Proposal, *, reuse: TrialRecord | None = None,
        callback: Callable[[TrialRecord, EpochReport], bool | None] | None = None,
        measure: Callable[[Any, TrialRecord], None] | None = None,
        sampler: str = "") -> TrialRecord:
    """Run one proposal: reuse an earlier record of its key, or cost, constraints and proxy
    training (``measure(model, record)`` instead of the evaluator's, for a backend that
    reports epochs itself). Any error but Ctrl-C and ``SchedulingError`` becomes a failed
    record: one bad genome (out of memory, a corner-case bug) must not stop the search."""
    fields = {**proposal.record_fields(), "sampler": sampler}
    record = failed(proposal, "", worker=evaluator.worker, device=str(evaluator.device),
                    sampler=sampler)
    try:
        if proposal.error:
            return record.fail(proposal.error)
        record = evaluator.new_record(proposal.number, **fields)  # filled in as measured
        if reuse is not None:
            return evaluator.reused(record, reuse)
        model = evaluator.build(genome_from_dict(proposal.genome))
        if measure is not None:
            measure(model, record)
            return record
        on_epoch = None if callback is None else (lambda report: callback(record, report))
        return evaluator.measure(model, record, on_epoch)
    except SchedulingError:
        raise
    except Exception as exc:  # Ctrl-C (not an Exception) goes through
        return record.fail(f"{type(exc).__name__}: {exc}")


def failed(proposal: Proposal, reason: str, **fields: Any) -> TrialRecord:
    """The failed record of a proposal that could not run, started now."""
    return TrialRecord(trial=proposal.number, status="failed", started_at=time.time(),
                       **proposal.record_fields(), **fields).fail(reason)


def enqueued_name(spec: str) -> str:
    """What a trial of ``--enqueue spec`` is named: a YAML file's stem, a zoo name itself."""
    path = Path(spec)
    return path.stem if path.suffix in (".yaml", ".yml") else path.name


def requeue(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Queue a study trial that never ran again: its parameters and its name, if it has
    one; ``retry_of`` tells it from a new draw."""
    named = {NAME: trial.user_attrs[NAME]} if NAME in trial.user_attrs else {}
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, **named})


def tag(trial: optuna.Trial) -> None:
    """Mark a study trial with the process that runs it, so that a later process can tell a
    dead one's trial (``alive``) from a live one's."""
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", socket.gethostname())


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the study ---------------------------------------------------------------------------------
def open_study(store: RunStore, space: SearchSpace, opts: SearchOptions,
               worker: int = 0) -> optuna.Study:
    """The run's study, with a sampler seeded by ``sampler_seed``: the worker's index and the
    trials already in the study give each worker, and each restart, its own draws."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = opts.storage or journal_storage(store)
    study = optuna.create_study(study_name=space.name, storage=storage,
                                directions=space.directions, load_if_exists=True)
    before = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    study.sampler = make_sampler(opts.sampler_name(space), sampler_seed(opts.seed, worker, before))
    return study


def running(store: RunStore, study_name: str) -> tuple[list[str], int]:
    """The running trials of a run that keeps its study in its folder: the processes that
    train them (``pid N on HOST``, one entry per trial; a process on another host is taken
    as live), and how many a dead process of this host left (drawn again on resume)."""
    if not store.journal.exists():
        return [], 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = journal_study(store, study_name)
    if study is None:
        return [], 0
    here, live, left = socket.gethostname(), [], 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, host = t.user_attrs.get("pid"), t.user_attrs.get("host")
        if host == here and isinstance(pid, int) and not alive(pid):
            left += 1
        else:  # no pid yet: drawn a moment ago, by a process that is starting it
            live.append(f"pid {pid} on {host}" if pid is not None else "a process starting")
    return live, left


def warm_start(study: optuna.Study, opts: SearchOptions, space: SearchSpace,
               data: Mapping[str, Any]) -> None:
    """Queue the ``--enqueue`` networks the study has not seen yet, then, in a new study, the
    warm start's hand designs (a study with trials is left as it is, so a resume never
    draws them again). Call under the run lock; ``data``: the run's (run.yaml ``data``)."""
    new = not study.get_trials(deepcopy=False)
    for spec, params in enqueue_points(opts, space, data).items():
        study.enqueue_trial(params, user_attrs={NAME: enqueued_name(spec)}, skip_if_exists=True)
    if new:  # a hand design enqueued above is not queued twice
        for params in warm_start_points(opts, space, data).values():
            study.enqueue_trial(params, skip_if_exists=True)


def tell(study: optuna.Study, trial: optuna.Trial | int, record: TrialRecord,
         space: SearchSpace) -> None:
    """Report a record to the study: its constraint values (when ``trial`` is the live
    ``Trial``), then values for trained, infeasible and diverged trials, FAIL for failures.
    A trial told before (a restored Ray trial that reports its record again) is left."""
    if isinstance(trial, optuna.Trial):
        for key, value in constraint_values(record, space).items():
            trial.set_constraint(key, value)
    if record.status == "failed":
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    else:
        study.tell(trial, objective_values(record, space.objectives), skip_if_finished=True)
