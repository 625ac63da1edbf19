"""The worker side of the Ray backend: one Tune trial (cost, constraints, reuse, proxy training
with a report and a saved training state per epoch, resumable) and the baselines task."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from ray import tune

from ..results import RunStore, TrialRecord
from . import trials
from .core import evaluate_baselines, find_reuse
from .evaluator import ProxyEvaluator
from .space import METRICS as SPACE_METRICS
from .space import SearchSpace

METRICS = tuple(SPACE_METRICS.items())  # (metric, direction): every result carries all
STAGE = "search-"  # Tune experiments of a run: ray/search-0, ray/search-1, ...
STATE_FILE = "state.pt"
TRIAL_DIR = "trial-{number}-{trial_id}"  # a Tune trial's name and folder in its experiment
PAST_DEADLINE = "past_deadline"  # the last result of a trial that --timeout ended


@dataclass(frozen=True, eq=False)
class TrialSettings:
    """What every trial of a run needs; pickled to the workers. Equal settings (same space,
    device, threads and folders) share one evaluator per worker process."""

    space: SearchSpace
    out: str
    data_dir: str | None
    device: str
    threads: int
    sampler: str
    cwd: str  # the driver's folder: relative paths in the space (folder:PATH) resolve there
    deadline: float | None = None  # --timeout as a time.time(): a trial ends at the epoch past it
    latency_threads: int = 1  # SearchOptions.latency_threads
    latency_table: str | None = None  # SearchOptions.latency_table

    def _key(self) -> tuple:
        return (self.space.fingerprint(), self.out, self.data_dir, self.device, self.threads,
                self.cwd, self.latency_threads, self.latency_table)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrialSettings) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@contextlib.contextmanager
def in_folder(path: str) -> Iterator[None]:
    """Work in ``path`` (Tune starts a trial in its own folder), then go back."""
    previous = os.getcwd()
    if os.path.isdir(path):
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@functools.lru_cache(maxsize=1)
def _evaluator(settings: TrialSettings) -> ProxyEvaluator:
    """The evaluator of this worker process: its trials share the loaded dataset."""
    return ProxyEvaluator(settings.space, settings.device, settings.threads, settings.data_dir,
                          latency_threads=settings.latency_threads,
                          latency_table=settings.latency_table)


def _metrics(record: TrialRecord, epoch: int | None = None) -> dict:
    """A Tune result: the objective values the sampler sees (accuracy 0 unless trained), the
    status, and the record so far."""
    out = {m: record.sampler_value(m, d) for m, d in METRICS}
    # as JSON text: Tune flattens nested dicts in what it hands the searcher
    out.update(status=record.status, record=json.dumps(record.to_dict()))
    if epoch is not None:
        out["epoch"] = epoch  # ASHA's time attribute: only training trials report it
    return out


def record_of(result: dict | None) -> TrialRecord | None:
    """The record a Tune result carries (``_metrics``), or None."""
    text = (result or {}).get("record")
    return TrialRecord.from_dict(json.loads(text)) if isinstance(text, str) else None


class ReportError(trials.SchedulingError):
    """Raised through ``train`` when ``tune.report`` itself failed (not the genome's fault)."""


def trial_function(settings: TrialSettings) -> Callable[[dict], None]:
    def dla_nas_trial(config: dict) -> None:
        with in_folder(settings.cwd):
            _run_trial(trials.Proposal.from_dict(config["dla"]), settings)

    return dla_nas_trial


def _run_trial(proposal: trials.Proposal, settings: TrialSettings) -> None:
    records = RunStore(settings.out).records()
    done = next((r for r in reversed(records)
                 if r.kind == "search" and r.trial == proposal.number), None)
    if done is not None:  # finished after Tune's last snapshot: report it again, train nothing
        tune.report(_metrics(done))
        return
    evaluator = _evaluator(settings)
    evaluator.worker = f"{socket.gethostname()}:{tune.get_context().get_trial_id()}"
    reported: list[int] = []
    try:
        record = trials.run(evaluator, proposal, reuse=find_reuse(records, proposal.key),
                            measure=functools.partial(_train, evaluator, out=settings.out,
                                                      deadline=settings.deadline,
                                                      reported=reported),
                            sampler=settings.sampler)
    except trials.PastDeadline:  # no record: the searcher asks for the proposal again
        tune.report({**{m: 0.0 for m, _ in METRICS}, "status": PAST_DEADLINE,
                     PAST_DEADLINE: True})
        return
    if record.status == "ok" and reported:
        return  # the last epoch's report already carried the final record
    tune.report(_metrics(record))


def _state_path(out: str, number: int) -> Path:
    """Where the running Tune trial of record ``number`` keeps its training state: in the
    trial's folder of its experiment, one file, replaced after every epoch."""
    context = tune.get_context()
    folder = TRIAL_DIR.format(number=number, trial_id=context.get_trial_id())
    return Path(out, "ray", context.get_experiment_name(), folder, STATE_FILE)


def state_files(out: str, number: int) -> Iterator[Path]:
    """The training states on disk of record ``number``, in any Tune trial and experiment."""
    folders = TRIAL_DIR.format(number=number, trial_id="*")
    return Path(out, "ray").glob(f"{STAGE}*/{folders}/{STATE_FILE}")


def _train(evaluator: ProxyEvaluator, model, record: TrialRecord, *, out: str,
           deadline: float | None, reported: list[int]) -> None:
    """Cost, constraints, then proxy training with a report and saved state per epoch, filling
    ``record``, until ``deadline`` (``trials.check_deadline``); the epochs reported go to
    ``reported``. A trial that runs again (a restored experiment, a retry after a failure, a
    new Tune id when Tune's snapshot predates the trial) finds its state by record number:
    Tune is given no checkpoints, as its snapshot lags the trials and, after a kill -9 of the
    driver, could name a checkpoint Tune had since deleted, which failed the restore."""
    saved = trials.SavedTraining.of(evaluator, record)
    resume = saved.resume(state_files(out, record.trial))
    state_path = _state_path(out, record.trial)

    def on_epoch(report) -> None:
        trials.check_deadline(deadline, record.trial, report)
        state = report.state()
        partial = replace(record, val_acc=report.val_acc, epochs_run=report.epoch,
                          val_acc_per_epoch=list(state["history"]["val_acc_per_epoch"]),
                          train_seconds=float(state["train_time"]))
        if report.val is not None:
            partial.set_val_metrics(report.val)
        partial.finish()
        saved.save(state_path, state)
        try:
            metrics = _metrics(partial, report.epoch)
            if resume is not None:
                metrics["resumed_after"] = int(resume["epoch"])
            tune.report(metrics)
        except Exception as exc:
            raise ReportError(str(exc)) from exc
        reported.append(report.epoch)

    evaluator.measure(model, record, on_epoch, resume=resume)


def baselines_task(settings: TrialSettings, todo: list[tuple[int, str]]) -> list[dict]:
    """Train the baselines (in a Ray task with the trial resources) and return their records."""
    with in_folder(settings.cwd):
        evaluator = _evaluator(settings)
        evaluator.worker = f"{socket.gethostname()}:baselines"
        records = list(evaluate_baselines(evaluator, todo))
    for record in records:
        record.backend = "ray"
    return [r.to_dict() for r in records]
