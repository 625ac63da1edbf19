"""The driver side of the Ray backend: Tune's searcher (the run's Optuna study, as the Optuna
backend draws from it), the callback that records each finished trial, and the live driver
of a run, which both reach through ``live_driver(run)`` while ``driving(driver)`` holds."""

from __future__ import annotations

import contextlib
import pickle
import socket
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import Searcher

from ..results import RunStore, TrialRecord
from . import trials
from .core import OnEvent, Run, SearchEvent, SearchOptions, find_reuse
from .ray_trial import PAST_DEADLINE, record_of, state_files
from .space import SearchSpace

# The driver of each run in progress, set by ``driving``: Tune pickles the searcher and the
# callback with its experiment and restores them, so they keep only the run's folder and
# find the live driver (deadline, recorder) by it.
_DRIVER: ContextVar["Driver | None"] = ContextVar("dla_nas_ray_driver", default=None)


class DlaNasSearcher(Searcher):
    """Tune's searcher of a run: it draws from the run's Optuna study, with the Optuna
    backend's sampler, proposals and telling (``trials``); it holds back a genome that a
    running trial trains until that one's record can be reused, so no genome is trained
    twice at once, and it finishes at the deadline of ``--timeout``.

    Tune pickles it with its experiment: it keeps plain data (the run folder, the trials in
    flight), finds the live driver by the run folder (``live_driver``), and opens the study
    again in the process where it runs."""

    def __init__(self, run: str, space: SearchSpace, opts: SearchOptions,
                 resolution: int) -> None:
        super().__init__()  # no metric: the scheduler has its own, the sampler the space's
        self._run, self._space, self._opts, self._resolution = run, space, opts, resolution
        self._running: dict[str, tuple[int, dict]] = {}  # Tune trial id -> (study trial, proposal)
        self._held: tuple[int, dict] | None = None  # a proposal waiting for its twin
        self._study: optuna.Study | None = None
        self._live: dict[int, optuna.Trial] = {}  # study trials asked by this process

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_study": None, "_live": {}}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        # a trial that finished after this state was saved has its record: not in flight
        recorded = RunStore(self._run).search_records()
        self._running = {tid: (n, p) for tid, (n, p) in self._running.items()
                         if p["number"] not in recorded}

    def _open(self) -> optuna.Study:
        """The run's study. Trials that a dead driver asked for and Tune never saved (it died
        in between) are failed and asked again, as the Optuna backend retries a dead
        worker's; those of a live driver on the same run are left to it."""
        if self._study is None:
            store = RunStore(self._run)
            self._study = study = trials.open_study(store, self._space, self._opts)
            ours = {study_trial for study_trial, _ in self._in_flight()}
            host = socket.gethostname()
            with store.lock():
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    if (t.number not in ours and t.user_attrs.get("host") == host
                            and not trials.alive(t.user_attrs.get("pid", -1))):
                        self._retry(t.number)
        return self._study

    def _retry(self, study_trial: int) -> None:
        """Fail a study trial that never ran, and queue it again."""
        study = self._open()
        self._live.pop(study_trial, None)
        asked = next(t for t in study.get_trials(deepcopy=False) if t.number == study_trial)
        study.tell(study_trial, state=TrialState.FAIL, skip_if_finished=True)
        trials.requeue(study, asked)

    def _in_flight(self) -> list[tuple[int, dict]]:
        """(study trial, proposal) of the trials running and the one held back."""
        return [*self._running.values(), *([self._held] if self._held else [])]

    def _next_number(self) -> int:
        """The lowest record number that no record and no trial in flight has: numbers stay
        0..N-1 across Tune experiments and restores."""
        taken = set(RunStore(self._run).search_records())
        taken |= {proposal["number"] for _, proposal in self._in_flight()}
        return next(n for n in range(len(taken) + 1) if n not in taken)

    def suggest(self, trial_id: str) -> dict | str | None:
        driver = live_driver(self._run)
        if driver is not None and driver.past_deadline():
            if self._held is not None:  # drawn, never run: asked again by a later call
                self._retry(self._held[0])  # after a restore too, when _live is empty
                self._held = None
            return Searcher.FINISHED
        if self._held is None:
            trial = self._open().ask()
            trials.tag(trial)
            self._live[trial.number] = trial
            proposal = trials.propose(self._space, trial, self._resolution, self._next_number())
            self._held = (trial.number, proposal.to_dict())
        study_trial, proposal = self._held
        key = proposal["key"]
        if (key and key in {p["key"] for _, p in self._running.values()}
                and find_reuse(RunStore(self._run).records(), key) is None):
            return None  # its twin is training it: ask again later, then reuse its record
        self._held = None
        self._running[trial_id] = (study_trial, proposal)
        return {"dla": proposal}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._running:
            return
        study = self._open()  # before the trial leaves _running: opening retries dead ones
        study_trial, proposal = self._running.pop(trial_id)
        if not error and (result or {}).get(PAST_DEADLINE):  # no record: drawn again later
            self._retry(study_trial)
            return
        record = None if error else record_of(result)
        if record is None:
            record = trials.failed(trials.Proposal.from_dict(proposal),
                                   "the trial ended without a result")
        # a trial asked before a restore is told without its constraint values
        trials.tell(study, self._live.pop(study_trial, study_trial), record, self._space)


class DlaNasRecorder(tune.Callback):
    """Writes each finished trial's record at once, from the process that runs Tune (the
    driver, or with Ray Client the cluster's head): the only writer of ``trials.jsonl``."""

    def __init__(self, run: str, max_epochs: int, device: str) -> None:
        self.run, self.max_epochs, self.device = run, max_epochs, device

    def recorder(self, trial) -> "Recorder":
        driver = live_driver(self.run)
        if driver is not None:
            return driver.recorder
        # Tune runs in another process (Ray Client): the run folder is the trial's
        return Recorder(RunStore(Path(trial.path).parents[2]), self.max_epochs, self.device)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.recorder(trial).record(trial.last_result or {}, trial.config)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        """Tune gave up on the trial (its worker died twice, say): a failed record at once,
        so that its number is taken and the numbers stay dense."""
        lines = [line for line in str(trial.get_error() or "").splitlines() if line.strip()]
        reason = lines[-1].strip()[:300] if lines else "the trial's worker failed"
        self.recorder(trial).record({}, trial.config, reason=f"Ray: {reason}")


class Recorder:
    """Appends records to a run: numbers never twice, ``stopped_rung`` from ASHA; each one
    written goes to ``on_record(record, resumed_after)``."""

    def __init__(self, store: RunStore, max_epochs: int, device: str,
                 on_record: Callable[[TrialRecord, int | None], None] | None = None) -> None:
        self.store, self.max_epochs, self.device = store, max_epochs, device
        self.on_record = on_record or (lambda record, resumed_after=None: None)

    def numbers(self) -> set[int]:
        return set(self.store.search_records())

    def record(self, result: dict, config: dict,
               reason: str = "the trial ended without a result") -> None:
        if result.get(PAST_DEADLINE):
            return  # --timeout ended it: no record, its number is drawn again
        record = record_of(result)
        if record is None:  # no result at all (Tune gave up on it): keep the numbers dense, say why
            proposal = trials.Proposal.from_dict({"number": -1, **(config or {}).get("dla", {})})
            record = trials.failed(proposal, reason, device=self.device)
        if record.trial < 0 or record.trial in self.numbers():
            return  # reported again after a restore: already on disk
        if "epoch" in result and record.status == "ok" and record.epochs_run < self.max_epochs:
            record.stopped_rung = record.epochs_run  # the scheduler stopped it at this rung
        record.backend = "ray"
        self.store.append(record.finish())
        # recorded: its training states are spent (kept until now: a crash would retrain it)
        for state in state_files(str(self.store.path), record.trial):
            state.unlink(missing_ok=True)
        self.on_record(record, result.get("resumed_after"))


class Driver:
    """The run in progress in this process; what it records goes to ``on_event``."""

    def __init__(self, run: Run, opts: SearchOptions, device: str,
                 on_event: OnEvent | None = None) -> None:
        self.space, self.store, self.opts, self.epochs = run.space, run.store, opts, run.epochs
        self.opened = run
        self.run = str(run.store.path.resolve())
        self.deadline = opts.deadline()
        self.emit = on_event or (lambda event: None)
        self.recorder = Recorder(run.store, run.epochs, device, self.recorded)

    def recorded(self, record: TrialRecord, resumed_after: int | None = None) -> None:
        self.emit(SearchEvent("record", self.opened, len(self.numbers()), record=record,
                              resumed_after=resumed_after))

    def note(self, message: str) -> None:
        """Something the user should know that is not a record (``SearchEvent`` "note")."""
        self.emit(SearchEvent("note", self.opened, len(self.numbers()), message=message))

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def numbers(self) -> set[int]:
        return self.recorder.numbers()


@contextlib.contextmanager
def driving(driver: Driver) -> Iterator[Driver]:
    """Make ``driver`` the live driver of its run for the length of the block."""
    token = _DRIVER.set(driver)
    try:
        yield driver
    finally:
        _DRIVER.reset(token)


def live_driver(run: str) -> Driver | None:
    """The live driver of the run folder ``run`` in this process, or None (Tune runs
    elsewhere, as with Ray Client, or the run is not in progress)."""
    driver = _DRIVER.get()
    return driver if driver is not None and driver.run == run else None
