"""The Optuna search backend: one study, N worker processes on one machine, crash-safe.

Each worker asks the study for a trial, maps it to a genome through the space, evaluates it
with the proxy (cost and constraints first, training only if feasible and not a duplicate),
appends the record to ``trials.jsonl`` and tells the study. Starting a trial happens under a
run-wide file lock, so N workers finish exactly the requested number of trials.

Resume: the same command with the same ``--out`` reopens the study. A trial left RUNNING by a
process that died (same host, dead pid) is completed from its record if it has one, else
marked failed and re-enqueued with the same parameters; so is a trial interrupted by Ctrl-C
or ``--timeout``. Its retry goes on from the last epoch the interrupted one finished (a
state saved after each epoch in the run's ``states/``, deleted once the trial is recorded).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait as wait_for_exit

import optuna
from optuna.trial import TrialState

from ..errors import DlaNasError
from ..results import RunStore, TrialRecord
from . import trials
from .core import (
    OnEvent,
    Run,
    SearchEvent,
    SearchOptions,
    check_workers,
    cpu_cores,
    evaluate_baselines,
    find_reuse,
    missing_baselines,
    open_run,
)
from .early_stopping import ParetoStopping, Rungs
from .evaluator import ProxyEvaluator
from .space import SearchSpace

BACKEND = "optuna"


# ---- trial bookkeeping -----------------------------------------------------------------------
def recover(study: optuna.Study, store: RunStore, space: SearchSpace) -> None:
    """Finish or retry trials that a dead or interrupted process left behind (call under
    the run lock)."""
    host = socket.gethostname()
    recorded = store.search_records()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and not trials.alive(t.user_attrs.get("pid", -1)):
            if t.number in recorded:  # died between writing the record and telling the study
                trials.tell(study, t.number, recorded[t.number], space)
            else:
                study.tell(t.number, state=TrialState.FAIL)
    everything = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in everything}
    for t in everything:
        if t.state == TrialState.FAIL and t.number not in recorded and t.number not in retried:
            trials.requeue(study, t)


def counts(study: optuna.Study, store: RunStore) -> tuple[int, int]:
    """(finished trials, that is trials with a record; running trials)."""
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return len(store.search_records()), running


def _running_twins(study: optuna.Study, number: int, key: str) -> set[int]:
    """Trials of this host, other than ``number``, that are training ``key`` (a genome and
    its recipe, ``TrialRecord.key``) in a live process (a twin on another host cannot be
    watched, so it is not waited for)."""
    host = socket.gethostname()
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != number and t.user_attrs.get("key", t.user_attrs.get("hash")) == key
            and t.user_attrs.get("host") == host and trials.alive(t.user_attrs.get("pid", -1))}


def twin_record(study: optuna.Study, store: RunStore, key: str, owners: set[int],
                poll: float = 1.0) -> TrialRecord | None:
    """The record of an earlier evaluation of ``key`` (``TrialRecord.key``), or None. While
    one of ``owners`` (trials training it) still runs, wait for its record rather than train
    the genome twice."""
    while True:
        done = find_reuse(store.records(), key)
        if done is not None:
            return done
        running = {t.number for t in study.get_trials(deepcopy=False,
                                                      states=(TrialState.RUNNING,))}
        if not owners & running:
            return None
        time.sleep(poll)


def _until(deadline: float | None, stopping: ParetoStopping | None):
    """The epoch callback of a trial: ``stopping``'s, after a check of the deadline."""
    if deadline is None:
        return stopping

    def on_epoch(record: TrialRecord, report) -> bool:
        # a rung's decision first: a trial retried after the deadline goes on after it
        if stopping is not None and stopping(record, report):
            return True
        trials.check_deadline(deadline, record.trial, report)
        return False
    return on_epoch


def _saving_state(evaluator: ProxyEvaluator, store: RunStore, callback):
    """The proxy training of a trial with its state saved after each epoch at
    ``RunStore.trial_state`` (``trials.SavedTraining``): a retried trial goes on from there."""
    def measure(model, record: TrialRecord) -> None:
        path = store.trial_state(record.key)
        saved = trials.SavedTraining.of(evaluator, record)
        resume = saved.resume([path])

        def on_epoch(report) -> bool:
            if report.epoch < report.epochs:  # after the last one, the record follows
                saved.save(path, report.state())
            return bool(callback(record, report)) if callback is not None else False

        evaluator.measure(model, record, on_epoch, resume=resume)
    return measure


def run_trial(study: optuna.Study, trial: optuna.Trial, space: SearchSpace,
              evaluator: ProxyEvaluator, store: RunStore, sampler: str = "",
              stopping: ParetoStopping | None = None,
              deadline: float | None = None) -> TrialRecord | None:
    """Propose, run, record and tell one trial (``trials``); returns its record. With
    ``stopping``, the trial may stop at a rung (``stopped_rung``); past ``deadline`` (a
    ``time.time()``), it ends after the epoch it is in, unrecorded: None."""
    try:
        with store.lock():  # tagging under the lock: of two twins, the first tagged trains
            proposal = trials.propose(space, trial, evaluator.data.resolution)
            owners = _running_twins(study, trial.number, proposal.key)
            trial.set_user_attr("hash", proposal.hash)
            trial.set_user_attr("key", proposal.key)
        reuse = twin_record(study, store, proposal.key, owners) if proposal.key else None
        record = trials.run(evaluator, proposal, reuse=reuse, sampler=sampler,
                            measure=_saving_state(evaluator, store, _until(deadline, stopping)))
    except (trials.PastDeadline, KeyboardInterrupt) as stop:
        study.tell(trial, state=TrialState.FAIL)  # no record: retried on resume
        if isinstance(stop, KeyboardInterrupt):
            raise
        return None
    store.append(record)
    if record.key:  # recorded: its saved state is spent
        store.trial_state(record.key).unlink(missing_ok=True)
    trials.tell(study, trial, record, space)
    return record


# ---- worker ----------------------------------------------------------------------------------
def _worker_signals(parent: int) -> None:
    """Workers end when the driver dies (kill -9 included), so a resume never races them, and
    stop gracefully on the driver's SIGINT, also when the search was started with SIGINT
    ignored (``nohup ... &``), which a worker inherits, and on a SIGTERM sent to the whole
    process group (``timeout``, a job scheduler)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def worker_main(opts_dict: dict, index: int, device: str, threads: int | None, parent: int,
                deadline: float | None) -> None:
    """One worker process: run baselines (worker 0 only), then trials until the study has
    the requested number or the deadline passes."""
    _worker_signals(parent)
    opts = SearchOptions(**opts_dict)
    store = RunStore(opts.out)
    space = SearchSpace.of_run(store.info())  # as the driver resolved it: parsed once
    study = trials.open_study(store, space, opts, worker=index)
    try:
        with warnings.catch_warnings():  # the driver showed the data's warnings, once
            warnings.simplefilter("ignore", UserWarning)
            evaluator = ProxyEvaluator(space, device, threads, opts.data_dir,
                                       worker=f"{socket.gethostname()}:{index}",
                                       latency_threads=opts.latency_threads,
                                       latency_table=opts.latency_table)
    except DlaNasError as exc:  # bad input: one line, no traceback
        print(f"dla-nas search: error: {exc}", file=sys.stderr)
        sys.exit(2)
    stopping = None
    if opts.early_stopping == "pareto":
        budget = space.proxy.train_config().epochs_for(len(evaluator.data.train))
        stopping = ParetoStopping(store, Rungs.for_budget(budget), space.objectives)
    try:
        if index == 0:  # each baseline is stored as soon as it is trained
            for record in evaluate_baselines(evaluator, missing_baselines(store, opts.baselines)):
                store.append(record)
        while deadline is None or time.time() < deadline:
            with store.lock():
                recover(study, store, space)
                done, running = counts(study, store)
                if done + running >= opts.trials:
                    break
                trial = study.ask()
                trials.tag(trial)
            run_trial(study, trial, space, evaluator, store, opts.sampler_name(space), stopping,
                      deadline)
    except KeyboardInterrupt:
        pass  # the interrupted trial was marked failed; the driver reports


# ---- driver ----------------------------------------------------------------------------------
def worker_devices(opts: SearchOptions) -> list[tuple[str, int | None]]:
    """(device, CPU threads) per worker: one GPU each with CUDA, else the cores split."""
    import torch

    from ..train.trainer import resolve_device

    device = resolve_device(opts.device)
    if device.type == "cuda":
        gpus = opts.gpus if opts.gpus is not None else list(range(torch.cuda.device_count()))
        if opts.device.startswith("cuda:"):
            gpus = [device.index]
        return [(f"cuda:{gpus[i % len(gpus)]}", None) for i in range(opts.workers)]
    return [("cpu", max(1, cpu_cores() // opts.workers))] * opts.workers


def start(opts: SearchOptions) -> tuple[Run, optuna.Study]:
    """Check the options and the data, create or reopen the run, and open its study."""
    from ..train.trainer import resolve_device

    # a device this machine lacks, or more CPU workers than cores, refused before run.yaml
    check_workers(opts, resolve_device(opts.device).type)
    run = open_run(opts, BACKEND)
    study = trials.open_study(run.store, run.space, opts)
    with run.store.lock():
        trials.warm_start(study, opts, run.space, run.data)
    return run, study


def launch_workers(opts: SearchOptions) -> list[mp.Process]:
    ctx = mp.get_context("spawn")
    deadline = opts.deadline()
    procs = []
    for i, (device, threads) in enumerate(worker_devices(opts)):
        p = ctx.Process(target=worker_main, name=f"dla-nas-worker-{i}",
                        args=(asdict(opts), i, device, threads, os.getpid(), deadline))
        p.start()
        procs.append(p)
    return procs


def stop_workers(procs: list[mp.Process], grace: float = 30.0) -> None:
    """Stop the workers: each marks its current trial failed and exits. A terminal's Ctrl-C
    reaches them directly, so wait a moment before sending SIGINT ourselves."""
    for p in procs:
        p.join(3.0)
    for p in procs:
        if p.is_alive() and p.pid:
            os.kill(p.pid, signal.SIGINT)
    end = time.time() + grace
    for p in procs:
        p.join(max(0.0, end - time.time()))
        if p.is_alive():
            p.kill()
            p.join()


@dataclass
class Outcome:
    """How a search call ended: finished search trials, the exit codes of failed workers,
    and trials still running in another process on the same run."""

    finished: int
    worker_errors: list[int]
    running: int = 0


def run_optuna_search(opts: SearchOptions, *, on_event: OnEvent | None = None,
                      poll: float = 1.0) -> Outcome:
    """Run (or continue) the search of ``opts`` with ``opts.workers`` processes.

    ``on_event`` hears the start, each record the workers write, and every ``poll`` seconds
    the trials running (``SearchEvent``). Raises ``DlaNasError`` for bad
    input, and ``KeyboardInterrupt`` after a Ctrl-C once the workers have stopped (every
    finished trial is saved; the same call continues the run)."""
    run, study = start(opts)
    emit = on_event or (lambda event: None)
    seen = len(run.store.records())
    emit(SearchEvent("start", run, counts(study, run.store)[0]))
    procs = launch_workers(opts)
    try:
        while True:
            alive = any(p.is_alive() for p in procs)
            records = run.store.records()
            finished, running = counts(study, run.store)
            for record in records[seen:]:
                emit(SearchEvent("record", run, finished, running, record))
            seen = len(records)
            emit(SearchEvent("poll", run, finished, running))
            if not alive:
                break
            # wakes as soon as a worker ends, not up to a poll later
            wait_for_exit([p.sentinel for p in procs if p.is_alive()], poll)
    except KeyboardInterrupt:
        stop_workers(procs)
        raise
    finished, running = counts(study, run.store)
    return Outcome(finished, [p.exitcode for p in procs if p.exitcode not in (0, None)],
                   running)
