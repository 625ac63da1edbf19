"""The Ray Tune search backend: the same search as ``dla_nas.search``, run on a Ray cluster.

``run_ray_search(opts, address=..., gpus_per_trial=..., cpus_per_trial=..., scheduler=...)``
runs ``opts.trials`` search trials of ``opts.space`` and writes the same run folder as the
Optuna backend (``run.yaml`` with ``backend: ray``, ``trials.jsonl``); Tune's own experiment
lives under ``results/<run>/ray/``.

How a trial runs
  The driver holds an ``OptunaSearch`` (same sampler as the Optuna backend, built by
  ``dla_nas.search.make_sampler``, same objectives as ``metric``/``mode`` lists). Its
  define-by-run function maps the Optuna trial to a genome with ``SearchSpace.sample`` and
  returns it as constants (``config["dla"]``: trial number, genome, hash, repairs). The
  trainable, on a worker with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (device
  ``cuda`` when that is above 0, else ``cpu``; CPU threads ``max(1, int(cpus_per_trial))``),
  counts params and MACs first and reports an ``infeasible`` result at once when a constraint
  is broken, without training; a genome already recorded is reported as ``reused`` (no
  training); otherwise it trains with the space's proxy and reports ``val_acc`` after every
  epoch with a checkpoint (model, optimiser, schedule, shuffling state, epoch), so a paused,
  failed or interrupted trial resumes from ``ray.tune.get_checkpoint()``. Values for the
  sampler are those of the Optuna backend: accuracy 0 for infeasible and diverged trials,
  FAIL for failures, and the constraint values (``value / limit - 1``) for NSGA-II and TPE.
  A genome that is being trained by another running trial is held back (the searcher
  answers "not now") until that trial finished, and then reused: no genome is trained twice.

Early stopping (``scheduler="asha"``)
  ``ASHAScheduler`` ranks trials on ONE metric, the space's first maximised objective
  (``val_acc`` or ``val_balanced_acc``) at the same epoch, among the
  trials that train, that is among MACs/params-feasible genomes only (infeasible, reused and
  failed trials report no epoch and never enter a rung). Cost is not a ranking criterion for
  ASHA: it is known before training and already steers the sampler. Rungs: grace period 1
  epoch, reduction factor 2, ``max_t`` = the proxy epochs, raised to reach the proxy's
  ``min_steps`` on the task's train split (rungs at 1, 2, 4 ... epochs). A
  stopped trial's record has ``stopped_rung`` = the epochs it trained (null when it ran the
  full budget) and its accuracy at that epoch. ``scheduler="none"`` trains every trial fully.
  The rungs live in the Tune experiment: a later experiment of the run (see Restore) starts
  with empty rungs, and a restored one refills them from the trials that report again.

Records and numbers
  The driver appends each record with ``RunStore.append`` from a Tune callback
  (``on_trial_complete``) as soon as the trial finishes, so a driver crash keeps every
  finished trial. Search trial numbers follow the Optuna trial numbers (creation order,
  0..N-1); a later experiment of the run takes the lowest numbers not yet recorded, so the
  numbers stay 0..N-1. Baselines get -1, -2, ... and are trained once, in a Ray task with the
  trial resources, before the search.

Restore
  Calling again with the same ``out`` restores the last Tune experiment
  (``Tuner.restore(..., resume_errored=True)``); unfinished trials continue from their last
  epoch checkpoint. A trial whose record is already on disk (it finished after Tune's last
  experiment snapshot) reports that record again and trains nothing; the driver never writes
  a number twice. If the run has fewer finished trials than asked (a larger ``--trials``, or
  a timeout, or Tune's state half written when the driver was killed), a new experiment
  ``ray/search-<k>`` runs the rest with a fresh sampler (seed + k). A trial resumes from the
  newest of Tune's checkpoint and the checkpoints on disk. Ctrl-C stops gracefully (Tune
  saves its state; running trials are resumed next time) and raises ``KeyboardInterrupt``
  after everything finished has been written and Ray has been shut down. After a kill -9 of
  the driver, Ray's dashboard and runtime-env agents linger for about a minute (Ray's own
  behaviour); everything else dies with the driver.

Clusters: with ``address`` the driver joins that cluster (``auto``, ``HOST:PORT`` or
``ray://HOST:PORT``); checkpoints are written under ``out``, so on several nodes ``out`` must
be on storage that every node sees (NFS). Without ``address`` a private local Ray is started
on loopback (no dashboard) and shut down at the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..arch.genome import Genome, GenomeError
from ..results import TRAINED, RunError, RunStore, TrialRecord
from .evaluator import proxy_train_config
from .optuna_backend import (
    SearchOptions,
    data_info,
    load_space,
    make_sampler,
    run_info,
    set_constraints,
)
from .space import METRICS as SPACE_METRICS
from .space import SearchSpace, SpaceError

SCHEDULERS = ("asha", "none")
ASHA_GRACE_PERIOD = 1
ASHA_REDUCTION_FACTOR = 2
METRICS = tuple(SPACE_METRICS.items())  # (metric, direction): every result carries all
_STAGE = "search-"
_STATE_FILE = "state.pt"

# The driver of the run in progress in this process (read by the searcher and the callback,
# which Tune pickles with the experiment and restores; they keep no settings of their own).
_ACTIVE: "_Driver | None" = None


# ---- input checks ------------------------------------------------------------------------------
def check_ray_options(opts: SearchOptions, *, address: str | None, gpus_per_trial: float,
                      cpus_per_trial: float, scheduler: str) -> None:
    """Refuse flags that cannot work, naming the flag (``GenomeError``, a ``ValueError``)."""
    def number(flag: str, value: Any) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise GenomeError(f"{flag}: {value!r} is not allowed (a number)")
        return float(value)

    gpus = number("--gpus-per-trial", gpus_per_trial)
    cpus = number("--cpus-per-trial", cpus_per_trial)
    if gpus < 0:
        raise GenomeError(f"--gpus-per-trial: {gpus:g} is not allowed (>= 0)")
    if gpus > 1 and not gpus.is_integer():
        raise GenomeError(f"--gpus-per-trial: {gpus:g} is not allowed "
                          "(a fraction up to 1, or a whole number)")
    if cpus <= 0:
        raise GenomeError(f"--cpus-per-trial: {cpus:g} is not allowed (> 0)")
    if scheduler not in SCHEDULERS:
        raise GenomeError(f"--scheduler: {scheduler!r} is not allowed "
                          f"(one of {', '.join(SCHEDULERS)})")
    if address is not None:
        _parse_address(address)
        if address.startswith("ray://"):
            try:
                import grpc  # noqa: F401  (Ray Client's transport)
            except ImportError:
                raise GenomeError(f"--address: {address!r} needs Ray Client, which is not "
                                  "installed (pip install 'ray[client]'); or run this on a "
                                  "node of the cluster with --address auto") from None
    if opts.workers != 1:
        raise GenomeError(f"--workers: {opts.workers} is not used with --backend ray (Ray runs as "
                          "many trials at once as --cpus-per-trial and --gpus-per-trial allow)")
    if opts.storage is not None:
        raise GenomeError("--storage: not used with --backend ray (the sampler state lives in "
                          "the Tune experiment under <out>/ray)")
    if opts.gpus is not None:
        raise GenomeError("--gpus: not used with --backend ray (use --gpus-per-trial; Ray gives "
                          "each trial its GPUs)")
    if opts.device == "cpu" and gpus > 0:
        raise GenomeError(f"--gpus-per-trial: {gpus:g} with --device cpu (trials use cuda "
                          "when --gpus-per-trial > 0); drop one of them")
    if opts.device.startswith("cuda") and gpus == 0:
        raise GenomeError("--gpus-per-trial: 0 with --device cuda (a trial sees only the GPUs "
                          "Ray gives it); pass e.g. --gpus-per-trial 1")
    if opts.timeout is not None and opts.timeout <= 0:
        raise GenomeError(f"--timeout: {opts.timeout} is not allowed (> 0)")


def _parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) to probe, or None for ``auto``/``local``; GenomeError when malformed."""
    if address in ("auto", "local"):
        return None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GenomeError(f"--address: {address!r} is not allowed (auto, HOST:PORT or "
                          "ray://HOST:PORT)")
    return host.strip("[]"), int(port)


def probe_address(address: str | None) -> None:
    """Fail fast and clearly on an address nothing listens on (instead of Ray's retries)."""
    target = _parse_address(address) if address is not None else None
    if target is not None:
        try:
            socket.create_connection(target, timeout=5).close()
        except OSError as exc:
            raise GenomeError(f"--address: cannot reach {address!r} ({exc.strerror or exc}); "
                              "is the Ray head running (ray start --head)?") from None


def _connect(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address`` or start a private local Ray (unless Ray is already
    initialised in this process, as a caller or a test may have done)."""
    import ray

    if ray.is_initialized():
        return
    if address in (None, "local"):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ray.init(address="local", num_cpus=num_cpus or cores or 1, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level=logging.ERROR)
        return
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenomeError(f"--address: cannot connect to {address!r} ({first[:200]})") from None


def _check_resources(gpus: float, cpus: float) -> None:
    """Refuse per-trial resources that no node of the cluster has (Tune would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus for r in nodes):
        most = max((r.get("CPU", 0) for r in nodes), default=0)
        raise GenomeError(f"--cpus-per-trial: {cpus:g} is more than any Ray node has "
                          f"(at most {most:g} CPUs)")
    if gpus > 0 and not any(r.get("GPU", 0) >= gpus for r in nodes):
        most = max((r.get("GPU", 0) for r in nodes), default=0)
        raise GenomeError(f"--gpus-per-trial: {gpus:g} is more than any Ray node has "
                          f"({most:g} GPUs)")


# ---- what a trial needs (pickled to the workers) ----------------------------------------------
@dataclass(frozen=True)
class _Settings:
    space: SearchSpace
    out: str
    data_dir: str | None
    device: str
    threads: int
    cwd: str  # the driver's folder: relative paths in the space (folder:PATH) resolve there


_EVALUATORS: dict = {}  # per worker process: the loaded dataset is shared by its trials


def _evaluator(settings: _Settings, worker: str):
    from .evaluator import ProxyEvaluator

    key = (settings.space.fingerprint(), settings.device, settings.threads, settings.data_dir)
    if key not in _EVALUATORS:
        _EVALUATORS.clear()
        _EVALUATORS[key] = ProxyEvaluator(settings.space, settings.device, settings.threads,
                                          settings.data_dir)
    evaluator = _EVALUATORS[key]
    evaluator.worker = worker
    return evaluator


def _metrics(record: TrialRecord, epoch: int | None = None) -> dict:
    """A Tune result: the objective values the sampler sees (as in the Optuna backend:
    accuracy 0 unless trained), the status, and the record so far."""
    out = {m: record.sampler_value(m, d) for m, d in METRICS}
    out.update(status=record.status, record=record.to_dict())
    if epoch is not None:
        out["epoch"] = epoch  # ASHA's time attribute: only training trials report it
    return out


def _finish(record: TrialRecord) -> TrialRecord:
    record.finished_at = time.time()
    record.wall_seconds = record.finished_at - record.started_at
    return record


class _ReportError(Exception):
    """Raised through ``train`` when ``tune.report`` itself failed (not the genome's fault)."""


def _trial_function(settings: _Settings):
    def dla_nas_trial(config: dict) -> None:
        _run_trial(config["dla"], settings)

    return dla_nas_trial


def _run_trial(dla: dict, settings: _Settings) -> None:
    if os.path.isdir(settings.cwd):  # Tune starts trials in their own folder
        os.chdir(settings.cwd)
    number = int(dla["number"])
    store = RunStore(settings.out)
    records = store.records()
    done = next((r for r in records if r.kind == "search" and r.trial == number), None)
    if done is not None:  # finished after Tune's last snapshot: report it again, train nothing
        tune.report(_metrics(done))
        return
    worker = f"{socket.gethostname()}:{tune.get_context().get_trial_id()}"
    record = TrialRecord(trial=number, status="failed", hash=dla.get("hash", ""),
                         genome=dla.get("genome"), repairs=list(dla.get("repairs", [])),
                         worker=worker, device=settings.device, started_at=time.time(),
                         backend="ray")
    try:
        if "error" in dla:
            raise SpaceError(dla["error"])
        evaluator = _evaluator(settings, worker)
        genome = Genome.from_dict(dla["genome"])
        reuse = next((r for r in records if r.hash == record.hash and r.status != "failed"), None)
        if reuse is not None:
            record = evaluator.evaluate(genome, number, repairs=record.repairs, reuse=reuse)
            record.backend = "ray"
        else:
            record = _train(evaluator, genome, record, settings.out)
            if record is None:  # the last epoch's report already carries the final record
                return
    except _ReportError:
        raise
    except Exception as exc:  # one bad genome (OOM, a corner-case bug) must not stop the search
        record.status, record.reason = "failed", f"{type(exc).__name__}: {exc}"
        record.finished_at = time.time()
        record.wall_seconds = record.finished_at - record.started_at
    tune.report(_metrics(record))


def _latest_state(out: str) -> dict | None:
    """The newest training state of this trial: Tune's checkpoint, or a newer one on disk
    (after a kill -9 of the driver, Tune's last snapshot may predate the last checkpoint)."""
    import torch

    states = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            states.append(torch.load(Path(folder, _STATE_FILE), map_location="cpu",
                                     weights_only=True))
    name = tune.get_context().get_trial_name()
    for path in Path(out, "ray").glob(f"{_STAGE}*/{name}/checkpoint_*/{_STATE_FILE}"):
        try:
            states.append(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # half written when the driver died: an older one will do
            pass
    return max(states, key=lambda st: st["train"]["epoch"], default=None)


def _train(evaluator, genome: Genome, record: TrialRecord, out: str) -> TrialRecord | None:
    """Cost, constraints, then proxy training with a report and checkpoint per epoch. Returns
    the record to report at the end, or None when the last epoch report was final."""
    import torch

    model = evaluator.build(genome)  # seeded: the same initial weights on any worker
    resume = None
    saved = _latest_state(out)
    if saved is not None:
        resume = saved["train"]
        record.started_at = saved["started_at"]
    reported = []

    def on_epoch(report) -> None:
        state = report.state()
        partial = replace(record, val_acc=report.val_acc, epochs_run=report.epoch,
                          val_acc_per_epoch=list(state["history"]["val_acc_per_epoch"]),
                          train_seconds=float(state["train_time"]))
        if report.val is not None:
            partial.set_val_metrics(report.val)
        _finish(partial)
        with tempfile.TemporaryDirectory(prefix="dla-nas-ckpt-") as folder:
            torch.save({"train": state, "started_at": record.started_at}, Path(folder, _STATE_FILE))
            try:
                metrics = _metrics(partial, report.epoch)
                if resume is not None:
                    metrics["resumed_after"] = int(resume["epoch"])
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            except Exception as exc:
                raise _ReportError(str(exc)) from exc
        reported.append(report.epoch)

    record = evaluator.measure(model, record, on_epoch, resume=resume)
    record.backend = "ray"
    if record.status == "ok" and reported:  # the last epoch's report was final
        return None
    return record


def _baselines_task(settings: _Settings, todo: list[tuple[int, str]]) -> list[dict]:
    """Train the baselines (in a Ray task with the trial resources) and return their records."""
    if os.path.isdir(settings.cwd):
        os.chdir(settings.cwd)
    worker = f"{socket.gethostname()}:baselines"
    evaluator = _evaluator(settings, worker)
    out = []
    for number, name in todo:
        try:
            record = evaluator.evaluate_baseline(name, trial=number)
        except GenomeError as exc:  # e.g. a zoo net whose strides do not fit the input
            record = TrialRecord(trial=number, status="failed", hash="", kind="baseline",
                                 name=name, reason=str(exc), worker=worker,
                                 device=settings.device, started_at=time.time(),
                                 finished_at=time.time())
        record.backend = "ray"
        out.append(record.to_dict())
    return out


# ---- the searcher (in the driver) ---------------------------------------------------------------
class _Sample:
    """The define-by-run space: an Optuna trial -> ``{"dla": {number, genome, hash, repairs}}``."""

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
            genome, repairs = self.space.sample(trial, self.resolution)
        except SpaceError as exc:
            return {"dla": {"number": number, "error": str(exc), "hash": "", "repairs": []}}
        return {"dla": {"number": number, "genome": genome.to_dict(), "repairs": repairs,
                        "hash": genome.canonical_hash()}}


class DlaNasOptunaSearch(OptunaSearch):
    """OptunaSearch with the Optuna backend's bookkeeping: constraint values and FAIL for the
    sampler, the deadline of ``--timeout``, and no genome trained by two trials at once.

    (Module level, so that Tune's pickles of it refer to this code and its live globals.)"""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._running: dict[str, str] = {}  # Tune trial id -> genome hash
        self._held: tuple | None = None  # (Optuna trial, config) waiting for its twin

    def suggest(self, trial_id: str):
        if _ACTIVE is not None and _ACTIVE.past_deadline():
            return Searcher.FINISHED
        if self._held is not None:
            ot_trial, config = self._held
            if config["dla"]["hash"] in self._running.values():
                return None
            self._held = None
            self._ot_trials[trial_id] = ot_trial
        else:
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            digest = config["dla"]["hash"]
            if digest and digest in self._running.values():
                self._held = (self._ot_trials.pop(trial_id), config)
                return None
        self._running[trial_id] = config["dla"]["hash"]
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
            set_constraints(self._ot_trials[trial_id], record, self._space.space)
        super().on_trial_complete(trial_id, result=result, error=error)


def _make_searcher(space: SearchSpace, resolution: int, sampler_name: str, seed: int,
                   taken: set[int]) -> DlaNasOptunaSearch:
    metrics = space.metrics
    modes = ["max" if d == "maximize" else "min" for d in space.directions]
    single = len(metrics) == 1
    return DlaNasOptunaSearch(space=_Sample(space, resolution, taken),
                              metric=metrics[0] if single else metrics,
                              mode=modes[0] if single else modes,
                              sampler=make_sampler(sampler_name, seed))


class DlaNasRecorder(tune.Callback):
    """Writes each finished trial's record at once, from the process that runs Tune (the
    driver, or with Ray Client the cluster's head): the only writer of ``trials.jsonl``."""

    def __init__(self, max_epochs: int, trials: int, device: str) -> None:
        self.max_epochs, self.trials, self.device = max_epochs, trials, device

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if _ACTIVE is not None:
            recorder = _ACTIVE.recorder
        else:  # Tune runs in another process (Ray Client): the run folder is the trial's
            recorder = _Recorder(RunStore(Path(trial.path).parents[2]), self.max_epochs,
                                 self.trials, self.device)
        recorder.record(trial.last_result or {}, trial.config)


# ---- the driver ---------------------------------------------------------------------------------
class _Recorder:
    """Appends records to a run: numbers never twice, ``stopped_rung`` from ASHA, a line each."""

    def __init__(self, store: RunStore, max_epochs: int, trials: int, device: str) -> None:
        self.store, self.max_epochs, self.trials, self.device = store, max_epochs, trials, device

    def numbers(self) -> set[int]:
        return {r.trial for r in self.store.records() if r.kind == "search"}

    def record(self, result: dict, config: dict,
               reason: str = "the trial ended without a result") -> None:
        data = result.get("record")
        dla = (config or {}).get("dla", {})
        if isinstance(data, dict):
            record = TrialRecord.from_dict(data)
        else:  # no result at all (Tune gave up on it): keep the numbers dense, say why
            record = TrialRecord(trial=int(dla.get("number", -1)), status="failed",
                                 hash=dla.get("hash", ""), genome=dla.get("genome"),
                                 repairs=list(dla.get("repairs", [])), reason=reason,
                                 started_at=time.time(), device=self.device)
        if record.trial < 0 or record.trial in self.numbers():
            return  # reported again after a restore: already on disk
        if "epoch" in result and record.status == "ok" and record.epochs_run < self.max_epochs:
            record.stopped_rung = record.epochs_run  # ASHA stopped it at this rung
        record.backend = "ray"
        record.finished_at = time.time()
        record.wall_seconds = record.finished_at - record.started_at if record.started_at else 0.0
        self.store.append(record)
        self.progress(record, result.get("resumed_after"))

    def progress(self, record: TrialRecord, resumed_after: int | None = None) -> None:
        what = record.status
        if record.val_acc is not None and record.status in TRAINED:
            what += f" val_acc {record.val_acc:.4f}"
        if record.macs is not None:
            what += f", {record.macs / 1e6:.3g}M MACs"
        if record.stopped_rung is not None:
            what += f", stopped by ASHA after {record.stopped_rung} epochs"
        if record.status == "reused":
            what += f" (from trial {record.reused_from})"
        if resumed_after is not None:
            what += f" (resumed after epoch {resumed_after})"
        if record.status in ("failed", "diverged", "infeasible") and record.reason:
            what += f" ({record.reason})"
        print(f"trial {record.trial}: {what} [{len(self.numbers())}/{self.trials}]", flush=True)


class _Driver:
    """The run in progress in this process."""

    def __init__(self, space: SearchSpace, store: RunStore, opts: SearchOptions,
                 device: str, epochs: int) -> None:
        self.space, self.store, self.opts, self.epochs = space, store, opts, epochs
        self.deadline = time.time() + opts.timeout if opts.timeout else None
        self.recorder = _Recorder(store, epochs, opts.trials, device)

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


class _SigintWatch:
    """Tune replaces the SIGINT handler during ``fit`` and puts back the one it found after the
    first Ctrl-C; seeing ours back afterwards means the run was interrupted."""

    def __init__(self) -> None:
        self.previous = None
        self.hits = 0

    def _handler(self, signum, frame) -> None:
        self.hits += 1
        raise KeyboardInterrupt

    def __enter__(self) -> "_SigintWatch":
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: Tune does not catch signals either
            self.previous = None
        return self

    def interrupted(self) -> bool:
        import ray

        if self.hits > 0:
            return True
        tune_catches = (self.previous is not None and not ray.util.client.ray.is_connected()
                        and os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0"))
        return tune_catches and signal.getsignal(signal.SIGINT) == self._handler

    def rearm(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self._handler)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _trial_name(trial) -> str:
    return f"trial-{trial.config.get('dla', {}).get('number', 'x')}-{trial.trial_id}"


def _stages(ray_dir: Path) -> list[Path]:
    found = [p for p in ray_dir.glob(f"{_STAGE}*") if p.is_dir() and p.name[len(_STAGE):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_STAGE):]))


def _restorable(path: Path) -> bool:
    """Tune can restore ``path``: its newest state files are complete (a kill -9 while Tune
    wrote them leaves a truncated file, which ``Tuner.restore`` cannot read)."""
    import ray.cloudpickle as cloudpickle
    from ray.tune import Tuner

    if not Tuner.can_restore(str(path)):
        return False
    try:
        json.loads(sorted(path.glob("experiment_state-*.json"))[-1].read_text())
        for pattern in ("tuner.pkl", "searcher-state-*.pkl", "search_gen_state-*.json"):
            cloudpickle.loads(sorted(path.glob(pattern))[-1].read_bytes())
    except Exception:  # missing (IndexError), truncated (ValueError, EOFError, ...)
        return False
    return True


def run_ray_search(opts: SearchOptions, *, address: str | None = None,
                   gpus_per_trial: float = 0.0, cpus_per_trial: float = 1.0,
                   scheduler: str = "asha", num_cpus: int | None = None) -> int:
    """Run (or continue) the search of ``opts`` with Ray Tune; returns the number of finished
    search trials in the run. ``num_cpus`` caps a local Ray (default: this machine's cores).

    Raises ``GenomeError``/``SpaceError``/``RunError`` (``ValueError``) for bad input and
    ``KeyboardInterrupt`` after a graceful Ctrl-C (everything finished is saved)."""
    global _ACTIVE

    check_ray_options(opts, address=address, gpus_per_trial=gpus_per_trial,
                      cpus_per_trial=cpus_per_trial, scheduler=scheduler)
    space = load_space(opts)
    opts.check(space)
    probe_address(address)
    if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
        raise GenomeError(f"num_cpus: {num_cpus!r} is not allowed (an integer >= 1)")
    store = RunStore(opts.out)
    data = data_info(space, opts)
    info = run_info(space, opts, data)
    info["backend"] = "ray"
    info["ray"] = {"address": address, "gpus_per_trial": gpus_per_trial,
                   "cpus_per_trial": cpus_per_trial, "scheduler": scheduler}
    if store.run_yaml.exists():  # a resume: same space, same backend (checked before Ray starts)
        backend = store.info().get("backend", "optuna")
        if backend != "ray":
            raise RunError(f"{store.run_yaml}: this run was made with --backend {backend}; "
                           "continue it with that backend or use another --out")
        store.create_or_check(info)
    device = "cuda" if gpus_per_trial > 0 else "cpu"
    epochs = proxy_train_config(space.proxy).epochs_for(data["train_size"])
    driver = _Driver(space, store, opts, device, epochs)
    if store.run_yaml.exists() and (len(driver.numbers()) >= opts.trials
                                    and not _missing_baselines(store, opts.baselines)):
        return len(driver.numbers())
    resolution = data["resolution"]
    settings = _Settings(space=space, out=str(store.path.resolve()),
                         data_dir=str(Path(opts.data_dir).resolve()) if opts.data_dir else None,
                         device=device, threads=max(1, int(cpus_per_trial)),
                         cwd=os.getcwd())

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # a snapshot a second: cheap here
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # trials.jsonl is the log
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables; a line a trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [q.level for q in quiet]
    import ray

    was_up = ray.is_initialized()
    interrupted = False
    try:
        for q in quiet:
            q.setLevel(logging.ERROR)
        with _SigintWatch() as watch:
            try:
                _connect(address, num_cpus)
                _check_resources(gpus_per_trial, cpus_per_trial)
                store.create_or_check(info)
                _ACTIVE = driver
                _run_baselines(store, settings, opts.baselines, gpus_per_trial, cpus_per_trial)
                interrupted = _run_stages(driver, settings, opts, space, resolution, gpus_per_trial,
                                          cpus_per_trial, scheduler, watch)
            except KeyboardInterrupt:
                interrupted = True
    finally:
        _ACTIVE = None
        for q, level in zip(quiet, levels):
            q.setLevel(level)
        if not was_up:  # also after a Ctrl-C in the middle of ray.init
            ray.shutdown()
    if interrupted:
        raise KeyboardInterrupt
    return len(driver.numbers())


def _missing_baselines(store: RunStore, names: list[str]) -> list[tuple[int, str]]:
    done = {r.name for r in store.records() if r.kind == "baseline"}
    return [(-(i + 1), name) for i, name in enumerate(names) if name not in done]


def _run_baselines(store: RunStore, settings: _Settings, names: list[str], gpus: float,
                   cpus: float) -> None:
    import ray

    todo = _missing_baselines(store, names)
    if not todo:
        return
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_baselines_task)
    for data in ray.get(task.remote(settings, todo)):
        record = TrialRecord.from_dict(data)
        store.append(record)
        acc = f"val_acc {record.val_acc:.4f}" if record.val_acc is not None else record.status
        print(f"baseline {record.name}: {acc}", flush=True)


def _run_stages(driver: _Driver, settings: _Settings, opts: SearchOptions, space: SearchSpace,
                resolution: int, gpus: float, cpus: float, scheduler: str,
                watch: _SigintWatch) -> bool:
    """Restore the last Tune experiment, then start new ones until ``opts.trials`` trials are
    recorded (or the deadline). Returns True when interrupted by Ctrl-C."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    ray_dir = driver.store.path.resolve() / "ray"
    ray_dir.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(_trial_function(settings), {"cpu": cpus, "gpu": gpus})
    restored: set[Path] = set()
    while len(driver.numbers()) < opts.trials and not driver.past_deadline():
        stages = _stages(ray_dir)
        before = len(driver.numbers())
        if stages and stages[-1] not in restored and _restorable(stages[-1]):
            restored.add(stages[-1])
            tuner = tune.Tuner.restore(str(stages[-1]), trainable=trainable,
                                       resume_unfinished=True, resume_errored=True)
            fresh = False
        else:
            index = int(stages[-1].name[len(_STAGE):]) + 1 if stages else 0
            if stages and stages[-1] not in restored:
                print(f"{stages[-1]}: Tune's state is incomplete (the driver died while writing "
                      f"it); its unfinished trials start again in {_STAGE}{index}", flush=True)
            searcher = _make_searcher(space, resolution, opts.sampler_name(space),
                                      opts.seed + index, driver.numbers())
            if scheduler == "asha":
                accuracy = next((m for m, d in space.objectives if d == "maximize"), "val_acc")
                sched = ASHAScheduler(time_attr="epoch", metric=accuracy, mode="max",
                                      max_t=driver.epochs,
                                      grace_period=min(ASHA_GRACE_PERIOD, driver.epochs),
                                      reduction_factor=ASHA_REDUCTION_FACTOR)
            else:
                sched = FIFOScheduler()
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=sched,
                                            num_samples=opts.trials - before, reuse_actors=True,
                                            trial_name_creator=_trial_name,
                                            trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name=f"{_STAGE}{index}", storage_path=str(ray_dir), verbose=0,
                    callbacks=[DlaNasRecorder(driver.epochs, opts.trials, settings.device)],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    failure_config=tune.FailureConfig(max_failures=1)))
            restored.add(ray_dir / f"{_STAGE}{index}")
            fresh = True
        watch.rearm()
        grid = tuner.fit()
        if watch.interrupted():
            return True
        driver.record_errored(grid)
        if fresh and len(driver.numbers()) == before:
            break  # nothing could run (e.g. the deadline passed at once)
    return False
