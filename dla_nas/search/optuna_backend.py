"""The Optuna search backend: one study, N worker processes on one machine, crash-safe.

Each worker asks the study for a trial, maps it to a genome through the space, evaluates it
with the proxy (cost and constraints first, training only if feasible and not a duplicate),
appends the record to ``trials.jsonl`` and tells the study. Starting a trial happens under a
run-wide file lock, so N workers finish exactly the requested number of trials.

Resume: the same command with the same ``--out`` reopens the study. A trial left RUNNING by a
process that died (same host, dead pid) is completed from its record if it has one, else
marked failed and re-enqueued with the same parameters; so is a trial interrupted by Ctrl-C.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import optuna
from optuna.trial import TrialState

from ..arch.baselines import KNOWN, is_baseline
from ..arch.genome import GenomeError
from ..data import DataError
from ..results import RunError, RunStore, TrialRecord
from ..train.trainer import TrainError
from .evaluator import ProxyEvaluator
from .space import CONSTRAINTS, SearchSpace, SpaceError

SAMPLERS = ("nsga2", "tpe", "random")


@dataclass
class SearchOptions:
    """Everything ``dla-nas search`` was asked to do."""

    space: str
    trials: int
    out: str
    sampler: str | None = None
    seed: int = 0
    workers: int = 1
    storage: str | None = None
    timeout: float | None = None
    device: str = "auto"
    gpus: list[int] | None = None
    baselines: list[str] = field(default_factory=list)
    data_dir: str | None = None
    dataset: str | None = None  # replaces the space's task.dataset
    resolution: int | None = None  # replaces the space's task.resolution

    def check(self, space: SearchSpace) -> None:
        if self.trials < 1:
            raise GenomeError(f"--trials: {self.trials} is not allowed (>= 1)")
        if self.workers < 1:
            raise GenomeError(f"--workers: {self.workers} is not allowed (>= 1)")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise GenomeError(f"--sampler: {self.sampler!r} is not allowed "
                              f"(one of {', '.join(SAMPLERS)})")
        for name in self.baselines:
            if not is_baseline(name):
                raise GenomeError(f"--baselines: {name!r} is not known (allowed: {KNOWN})")

    def sampler_name(self, space: SearchSpace) -> str:
        return self.sampler or ("nsga2" if len(space.objectives) > 1 else "tpe")


def load_space(opts: SearchOptions) -> SearchSpace:
    """The space of a search, with the task that ``--dataset``/``--resolution`` set."""
    return SearchSpace.from_yaml(opts.space).with_task(opts.dataset, opts.resolution)


def data_info(space: SearchSpace, opts: SearchOptions) -> dict:
    """Load the task's data once, before anything is written, and describe its shape (a bad
    dataset is reported here, not inside a worker)."""
    from .evaluator import load_task_data

    try:
        data = load_task_data(space, opts.data_dir)
    except DataError as exc:
        where = "--dataset" if opts.dataset else f"{space.path}: task.dataset"
        raise DataError(f"{where}: {exc}") from None
    return {"name": data.name, "resolution": data.resolution, "in_chans": data.in_chans,
            "num_classes": data.num_classes, "class_names": list(data.class_names),
            "train_size": len(data.train), "augment": data.augment.describe()}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE or random. NSGA-II and TPE read the constraint values that each trial
    sets (``Trial.set_constraint``) and prefer feasible trials."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=6, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def set_constraints(trial: optuna.Trial, record: TrialRecord, space: SearchSpace) -> None:
    """Constraint values for the sampler: value / limit - 1, feasible when <= 0."""
    for key, limit in space.constraints.items():
        value = record.value(CONSTRAINTS[key])
        if value is not None:
            trial.set_constraint(key, value / limit - 1.0)


def open_study(store: RunStore, space: SearchSpace, opts: SearchOptions) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = opts.storage or JournalStorage(JournalFileBackend(str(store.journal)))
    return optuna.create_study(
        study_name=space.name, storage=storage, directions=space.directions,
        sampler=make_sampler(opts.sampler_name(space), opts.seed), load_if_exists=True)


# ---- trial bookkeeping -----------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study, store: RunStore,
            objectives: tuple[tuple[str, str], ...]) -> None:
    """Finish or retry trials that a dead or interrupted process left behind (call under
    the run lock)."""
    host = socket.gethostname()
    recorded = _recorded(store)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and not _alive(t.user_attrs.get("pid", -1)):
            if t.number in recorded:  # died between writing the record and telling the study
                _tell(study, t.number, recorded[t.number], objectives)
            else:
                study.tell(t.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state == TrialState.FAIL and t.number not in recorded and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def _recorded(store: RunStore) -> dict[int, TrialRecord]:
    return {r.trial: r for r in store.records() if r.kind == "search"}


def counts(study: optuna.Study, store: RunStore) -> tuple[int, int]:
    """(finished trials, that is trials with a record; running trials)."""
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return len(_recorded(store)), running


def _tell(study: optuna.Study, number: int, record: TrialRecord,
          objectives: tuple[tuple[str, str], ...]) -> None:
    """Report a record to the study: values for trained, infeasible and diverged trials (the
    last two with accuracy 0 so that the sampler moves away), FAIL for failures."""
    if record.status == "failed":
        study.tell(number, state=TrialState.FAIL)
        return
    study.tell(number, [record.sampler_value(m, d) for m, d in objectives])


# ---- worker ----------------------------------------------------------------------------------
def _exit_with_parent(parent: int) -> None:
    """Workers end when the driver dies (kill -9 included), so a resume never races them."""
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
    _exit_with_parent(parent)
    opts = SearchOptions(**opts_dict)
    space = load_space(opts)
    store = RunStore(opts.out)
    study = open_study(store, space, opts)
    try:
        evaluator = ProxyEvaluator(space, device, threads, opts.data_dir,
                                   worker=f"{socket.gethostname()}:{index}")
    except (DataError, SpaceError, TrainError) as exc:  # bad input: one line, no traceback
        print(f"dla-nas search: error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        if index == 0:
            _run_baselines(evaluator, store, opts.baselines)
        while deadline is None or time.time() < deadline:
            with store.lock():
                recover(study, store, space.objectives)
                done, running = counts(study, store)
                if done + running >= opts.trials:
                    break
                trial = study.ask()
                trial.set_user_attr("pid", os.getpid())
                trial.set_user_attr("host", socket.gethostname())
            _run_trial(study, trial, space, evaluator, store)
    except KeyboardInterrupt:
        pass  # the interrupted trial was marked failed; the driver reports


def _run_baselines(evaluator: ProxyEvaluator, store: RunStore, names: list[str]) -> None:
    done = {r.name for r in store.records() if r.kind == "baseline"}
    for i, name in enumerate(names):
        if name not in done:
            try:
                store.append(evaluator.evaluate_baseline(name, trial=-(i + 1)))
            except GenomeError as exc:  # e.g. a zoo net whose strides do not fit the input
                store.append(TrialRecord(trial=-(i + 1), status="failed", hash="", kind="baseline",
                                         name=name, reason=str(exc), worker=evaluator.worker,
                                         started_at=time.time(), finished_at=time.time()))


def _running_twins(study: optuna.Study, number: int, digest: str) -> set[int]:
    """Trials of this host, other than ``number``, that are training the genome ``digest``
    in a live process (a twin on another host cannot be watched, so it is not waited for)."""
    host = socket.gethostname()
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != number and t.user_attrs.get("hash") == digest
            and t.user_attrs.get("host") == host and _alive(t.user_attrs.get("pid", -1))}


def twin_record(study: optuna.Study, store: RunStore, digest: str, owners: set[int],
                poll: float = 1.0) -> TrialRecord | None:
    """The record of an earlier evaluation of the genome ``digest``, or None. While one of
    ``owners`` (trials training it) still runs, wait for its record rather than train the
    genome twice."""
    while True:
        done = next((r for r in store.records() if r.hash == digest and r.status != "failed"),
                    None)
        if done is not None:
            return done
        running = {t.number for t in study.get_trials(deepcopy=False,
                                                      states=(TrialState.RUNNING,))}
        if not owners & running:
            return None
        time.sleep(poll)


def _run_trial(study: optuna.Study, trial: optuna.Trial, space: SearchSpace,
               evaluator: ProxyEvaluator, store: RunStore) -> None:
    try:
        with store.lock():  # tagging under the lock: of two twins, the first tagged trains
            genome, repairs = space.sample(trial, evaluator.data.resolution)
            digest = genome.canonical_hash()
            owners = _running_twins(study, trial.number, digest)
            trial.set_user_attr("hash", digest)
        reuse = twin_record(study, store, digest, owners)
        record = evaluator.evaluate(genome, trial.number, repairs=repairs, reuse=reuse)
    except KeyboardInterrupt:
        study.tell(trial, state=TrialState.FAIL)  # no record: retried on resume
        raise
    except Exception as exc:  # one bad genome (OOM, a bug in a corner) must not stop the search
        record = TrialRecord(trial=trial.number, status="failed", hash=trial.user_attrs.get("hash", ""),
                             reason=f"{type(exc).__name__}: {exc}", worker=evaluator.worker,
                             device=str(evaluator.device), started_at=time.time(),
                             finished_at=time.time())
    set_constraints(trial, record, space)
    store.append(record)
    _tell(study, trial.number, record, space.objectives)


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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [("cpu", max(1, (cores or 1) // opts.workers))] * opts.workers


def run_info(space: SearchSpace, opts: SearchOptions, data: dict) -> dict:
    return {"backend": "optuna", "space": space.raw, "space_path": space.path, "data": data,
            "sampler": opts.sampler_name(space),
            "space_fingerprint": space.fingerprint(),
            "objectives": [list(o) for o in space.objectives], "options": asdict(opts),
            "seed": opts.seed, "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def start(opts: SearchOptions) -> tuple[SearchSpace, RunStore, optuna.Study, bool, dict]:
    """Check the options and the data, create or reopen the run, and return what the driver
    needs: the space, the store, the study, whether it is a resume, and the data's shape."""
    space = load_space(opts)
    opts.check(space)
    store = RunStore(opts.out)
    data = data_info(space, opts)
    resumed = store.create_or_check(run_info(space, opts, data))
    if resumed:  # the study lives where the run put it
        backend = store.info().get("backend", "optuna")
        if backend != "optuna":
            raise RunError(f"{store.run_yaml}: this run was made with --backend {backend}; "
                           "continue it with that backend or use another --out")
        stored = store.info().get("options", {}).get("storage")
        if opts.storage is None:
            opts.storage = stored
        elif opts.storage != stored:
            raise RunError(f"{store.run_yaml}: this run keeps its study in "
                           f"{stored or 'its journal file'}; --storage {opts.storage} differs")
    return space, store, open_study(store, space, opts), resumed, data


def launch_workers(opts: SearchOptions) -> list[mp.Process]:
    ctx = mp.get_context("spawn")
    deadline = time.time() + opts.timeout if opts.timeout else None
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
