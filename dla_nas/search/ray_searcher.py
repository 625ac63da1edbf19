"""The driver side of the Ray backend: Tune's searcher (an Optuna sampler behind the space's
define-by-run sampling), the callback that records each finished trial, and the live driver
of a run, which both reach through ``live_driver(run)`` while ``driving(driver)`` holds."""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..errors import SpaceError
from ..results import TRAINED, RunStore, TrialRecord, trial_key
from .core import SearchOptions, constraint_values, make_sampler
from .ray_trial import METRICS
from .space import SearchSpace

# The driver of each run in progress, set by ``driving``: Tune pickles the searcher and the
# callback with its experiment and restores them, so they keep only the run's folder and
# find the live driver (deadline, recorder) by it.
_DRIVER: ContextVar["Driver | None"] = ContextVar("dla_nas_ray_driver", default=None)


class Sample:
    """The define-by-run space: an Optuna trial -> ``{"dla": {number, genome, hash, repairs,
    recipe, key}}`` (``key``: the genome and its recipe, ``TrialRecord.key``)."""

    def __init__(self, space: SearchSpace, resolution: int, taken: set[int]) -> None:
        self.space, self.resolution, self.taken = space, resolution, sorted(taken)

    def number(self, index: int) -> int:
        """The index-th trial number not taken by an earlier experiment of the run."""
        for n in range(index + len(self.taken) + 1):
            if n not in self.taken:
                if index == 0:
                    return n
                index -= 1
        raise AssertionError("unreachable")

    def __call__(self, trial) -> dict:
        number = self.number(trial.number)
        try:
            genome, repairs, recipe = self.space.sample_trial(trial, self.resolution)
        except SpaceError as exc:
            return {"dla": {"number": number, "error": str(exc), "hash": "", "key": "",
                            "repairs": []}}
        digest = genome.canonical_hash()
        return {"dla": {"number": number, "genome": genome.to_dict(), "repairs": repairs,
                        "hash": digest, "recipe": recipe, "key": trial_key(digest, recipe)}}


def _key(config: dict) -> str:
    """The genome and recipe a config trains (its hash alone in a config of dla-nas 0.1)."""
    dla = config["dla"]
    return dla.get("key", dla.get("hash", ""))


class DlaNasOptunaSearch(OptunaSearch):
    """OptunaSearch with the Optuna backend's bookkeeping: constraint values and FAIL for the
    sampler, the deadline of ``--timeout``, and no genome trained by two trials at once.

    It keeps only its run's folder; the deadline is the live driver's (``live_driver``)."""

    def __init__(self, run: str, **kw) -> None:
        super().__init__(**kw)
        self._run = run
        self._running: dict[str, str] = {}  # Tune trial id -> its genome and recipe (key)
        self._held: tuple | None = None  # (Optuna trial, config) waiting for its twin

    def suggest(self, trial_id: str):
        driver = live_driver(self._run)
        if driver is not None and driver.past_deadline():
            return Searcher.FINISHED
        if self._held is not None:
            ot_trial, config = self._held
            if _key(config) in self._running.values():
                return None
            self._held = None
            self._ot_trials[trial_id] = ot_trial
        else:
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            key = _key(config)
            if key and key in self._running.values():
                self._held = (self._ot_trials.pop(trial_id), config)
                return None
        self._running[trial_id] = _key(config)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self._running.pop(trial_id, None)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result and result.get("status") == "failed":
            result, error = None, True
        if result:
            record = TrialRecord(trial=0, status=result.get("status", "ok"), hash="",
                                 **{m: result.get(f"record/{m}") for m, _ in METRICS})
            for key, value in constraint_values(record, self._space.space).items():
                self._ot_trials[trial_id].set_constraint(key, value)
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(run: str, space: SearchSpace, resolution: int, sampler_name: str, seed: int,
                  taken: set[int], first: list[dict] | None = None) -> DlaNasOptunaSearch:
    """The searcher of one Tune experiment; its first draws are ``first`` (sampler
    parameters, ``core.warm_start_points``)."""
    metrics = space.metrics
    modes = ["max" if d == "maximize" else "min" for d in space.directions]
    single = len(metrics) == 1
    return DlaNasOptunaSearch(run, space=Sample(space, resolution, taken),
                              metric=metrics[0] if single else metrics,
                              mode=modes[0] if single else modes,
                              sampler=make_sampler(sampler_name, seed),
                              points_to_evaluate=first or None)


class DlaNasRecorder(tune.Callback):
    """Writes each finished trial's record at once, from the process that runs Tune (the
    driver, or with Ray Client the cluster's head): the only writer of ``trials.jsonl``."""

    def __init__(self, run: str, max_epochs: int, trials: int, device: str) -> None:
        self.run, self.max_epochs, self.trials, self.device = run, max_epochs, trials, device

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        driver = live_driver(self.run)
        if driver is not None:
            recorder = driver.recorder
        else:  # Tune runs in another process (Ray Client): the run folder is the trial's
            recorder = Recorder(RunStore(Path(trial.path).parents[2]), self.max_epochs,
                                 self.trials, self.device)
        recorder.record(trial.last_result or {}, trial.config)


class Recorder:
    """Appends records to a run: numbers never twice, ``stopped_rung`` from ASHA, a line each."""

    def __init__(self, store: RunStore, max_epochs: int, trials: int, device: str) -> None:
        self.store, self.max_epochs, self.trials, self.device = store, max_epochs, trials, device

    def numbers(self) -> set[int]:
        return set(self.store.search_records())

    def record(self, result: dict, config: dict,
               reason: str = "the trial ended without a result") -> None:
        data = result.get("record")
        dla = (config or {}).get("dla", {})
        if isinstance(data, dict):
            record = TrialRecord.from_dict(data)
        else:  # no result at all (Tune gave up on it): keep the numbers dense, say why
            record = TrialRecord(trial=int(dla.get("number", -1)), status="failed",
                                 hash=dla.get("hash", ""), genome=dla.get("genome"),
                                 repairs=list(dla.get("repairs", [])),
                                 recipe=dict(dla.get("recipe", {})), device=self.device,
                                 started_at=time.time()).fail(reason)
        if record.trial < 0 or record.trial in self.numbers():
            return  # reported again after a restore: already on disk
        if "epoch" in result and record.status == "ok" and record.epochs_run < self.max_epochs:
            record.stopped_rung = record.epochs_run  # the scheduler stopped it at this rung
        record.backend = "ray"
        self.store.append(record.finish())
        self.progress(record, result.get("resumed_after"))

    def progress(self, record: TrialRecord, resumed_after: int | None = None) -> None:
        what = record.status
        if record.val_acc is not None and record.status in TRAINED:
            what += f" val_acc {record.val_acc:.4f}"
        if record.macs is not None:
            what += f", {record.macs / 1e6:.3g}M MACs"
        if record.stopped_rung is not None:
            what += f", stopped early after {record.stopped_rung} epochs"
        if record.status == "reused":
            what += f" (from trial {record.reused_from})"
        if resumed_after is not None:
            what += f" (resumed after epoch {resumed_after})"
        if record.status in ("failed", "diverged", "infeasible") and record.reason:
            what += f" ({record.reason})"
        print(f"trial {record.trial}: {what} [{len(self.numbers())}/{self.trials}]", flush=True)


class Driver:
    """The run in progress in this process."""

    def __init__(self, space: SearchSpace, store: RunStore, opts: SearchOptions,
                 device: str, epochs: int) -> None:
        self.space, self.store, self.opts, self.epochs = space, store, opts, epochs
        self.run = str(store.path.resolve())
        self.deadline = opts.deadline()
        self.recorder = Recorder(store, epochs, opts.trials, device)

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def numbers(self) -> set[int]:
        return self.recorder.numbers()

    def record_errored(self, grid) -> None:
        """Trials that Tune gave up on (their worker died twice, say) get a failed record, so
        that the numbers stay dense; a later call does not train them again."""
        for result in grid:
            dla = (result.config or {}).get("dla", {})
            if result.error is None or "number" not in dla or int(dla["number"]) in self.numbers():
                continue
            lines = [line for line in str(result.error).strip().splitlines() if line.strip()]
            reason = lines[-1][:300] if lines else type(result.error).__name__
            self.recorder.record({}, result.config, reason=f"Ray: {reason}")


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
