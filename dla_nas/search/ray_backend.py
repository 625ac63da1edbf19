"""The Ray Tune search backend: the same search as the Optuna backend, run on a Ray cluster.

``run_ray_search(opts, address=..., gpus_per_trial=..., cpus_per_trial=...)``
runs ``opts.trials`` search trials of ``opts.space`` and writes the same run folder as the
Optuna backend (``run.yaml`` with ``backend: ray``, ``trials.jsonl``); Tune's own experiment
lives under ``results/<run>/ray/``.

How a trial runs
  The driver holds a ``DlaNasSearcher`` (``ray_searcher``): it asks the run's own Optuna
  study (the journal file in the run folder; the sampler of ``core.make_sampler``) and turns
  each study trial into a proposal with ``trials.propose``, as the Optuna backend does; the
  proposal travels as plain data (``config["dla"]``: record number, genome, hash, repairs,
  recipe, key), and the study and sampler never leave the driver. The trainable, on a worker with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (device
  ``cuda`` when that is above 0, else ``cpu``; CPU threads ``max(1, int(cpus_per_trial))``),
  counts params and MACs first and reports an ``infeasible`` result at once when a constraint
  is broken, without training; a genome already recorded is reported as ``reused`` (no
  training); otherwise it trains with the space's proxy and reports ``val_acc`` after every
  epoch and replaces its training state (model, optimiser, schedule, shuffling state,
  epoch) in ``state.pt`` of its Tune folder (deleted once the trial is recorded), so a
  failed or interrupted trial resumes from its last epoch. Tune is given no checkpoints of
  its own: its experiment snapshot lags the trials and, after a kill -9 of the driver, could
  name a checkpoint it had deleted since, which failed the trial's restore. Values for the
  sampler are those of the Optuna backend: accuracy 0 for infeasible and diverged trials,
  FAIL for failures, and the constraint values (``value / limit - 1``) for NSGA-II and TPE.
  A genome that is being trained by another running trial is held back (the searcher
  answers "not now") until that trial finished, and then reused: no genome is trained twice.

Early stopping (``opts.early_stopping``: ``pareto``, the default; ``asha``; ``none``)
  Both stop trials at the same rungs: ``early_stopping.Rungs.for_budget(max_t)``, one at
  half the proxy epochs (where a rung's ranking starts to mean something, measured in
  ``benchmarks/rung_correlation.py``); ``max_t`` is the proxy epochs, raised to reach the
  proxy's ``min_steps`` on the task's train split. Only
  trials that train enter a rung (infeasible, reused and failed trials report no epoch).
  ``pareto`` (``ray_scheduler.ParetoScheduler``) applies ``early_stopping.keep_going`` on all
  of the space's objectives, with the rung entries in the run's ``rungs.jsonl``, as the
  Optuna backend does; a restored experiment keeps them. ``asha`` is Tune's
  ``ASHAScheduler`` on ONE metric, the space's first maximised objective (``val_acc`` or
  ``val_balanced_acc``): it can stop a cheap network that belongs on the front, and its rungs
  live in the Tune experiment (a later experiment starts with empty ones). A stopped trial's
  record has ``stopped_rung`` = the epochs it trained (null when it ran the full budget) and
  its accuracy at that epoch. ``none`` trains every trial fully.

Records and numbers
  The driver appends each record with ``RunStore.append`` from a Tune callback
  (``on_trial_complete``) as soon as the trial finishes, so a driver crash keeps every
  finished trial; a trial that Tune gives up on gets a failed record at once
  (``on_trial_error``). Each proposal takes the lowest record number that no record and no
  trial in flight has, so the numbers stay 0..N-1 across experiments and restores (a study
  trial's own number can differ: a trial a dead driver drew but never ran is asked again).
  Baselines get -1, -2, ... and are trained once, in a Ray task with the
  trial resources, before the search.

Restore
  Calling again with the same ``out`` restores the last Tune experiment
  (``Tuner.restore(..., resume_errored=True)``); unfinished trials continue from their last
  epoch's state. A trial whose record is already on disk (it finished after Tune's last
  experiment snapshot) reports that record again and trains nothing; the driver never writes
  a number twice. If the run has fewer finished trials than asked (a larger ``--trials``, or
  a timeout, or Tune's state half written when the driver was killed), a new experiment
  ``ray/search-<k>`` runs the rest from the same study, its sampler seeded from ``--seed``
  and the trials already in the study (``core.sampler_seed``). A trial resumes from the
  newest state on disk of its record number and genome (a trial newer than Tune's snapshot
  runs again under a new Tune id, from that state).
  Ctrl-C stops gracefully (Tune saves its state; running trials are resumed next time) and
  raises ``KeyboardInterrupt`` after everything finished has been written and Ray has been
  shut down. After a kill -9 of the driver, Ray's dashboard and runtime-env agents linger for
  about a minute (Ray's own behaviour); everything else dies with the driver.

Clusters: with ``address`` the driver joins that cluster (``auto``, ``HOST:PORT`` or
``ray://HOST:PORT``); training states are written under ``out``, so on several nodes ``out`` must
be on storage that every node sees (NFS). Without ``address`` a private local Ray is started
on loopback (no dashboard) and shut down at the end.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import optuna
from ray import tune

from ..analysis.pareto import accuracy_metric
from ..errors import OptionError
from ..results import RunStore, TrialRecord
from . import trials
from .core import OnEvent, SearchEvent, SearchOptions, missing_baselines, open_run
from .early_stopping import ParetoStopping, Rungs
from .ray_cluster import (
    check_ray_options,
    check_resources,
    connect,
    probe_address,
    tune_environment,
)
from .ray_scheduler import ParetoScheduler
from .ray_searcher import DlaNasRecorder, DlaNasSearcher, Driver, driving
from .ray_trial import STAGE, TRIAL_DIR, TrialSettings, baselines_task, trial_function

BACKEND = "ray"
ASHA_REDUCTION_FACTOR = 2


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
    return TRIAL_DIR.format(number=trial.config.get("dla", {}).get("number", "x"),
                            trial_id=trial.trial_id)


def _stages(ray_dir: Path) -> list[Path]:
    found = [p for p in ray_dir.glob(f"{STAGE}*") if p.is_dir() and p.name[len(STAGE):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(STAGE):]))


def _restorable(path: Path) -> bool:
    """Tune can restore ``path``: its newest state files are complete (a kill -9 while Tune
    wrote them leaves a truncated file, which ``Tuner.restore`` cannot read), and it holds
    no Tune checkpoints (dla-nas 0.2 gave Tune one per epoch and kept the last, and a
    snapshot could name one deleted since: the trial failed to restore)."""
    import ray.cloudpickle as cloudpickle
    from ray.tune import Tuner

    if not Tuner.can_restore(str(path)) or any(path.glob("trial-*/checkpoint_*")):
        return False  # checkpoints: dla-nas 0.2's, which Tune may have deleted since
    try:
        json.loads(sorted(path.glob("experiment_state-*.json"))[-1].read_text())
        for pattern in ("tuner.pkl", "searcher-state-*.pkl", "search_gen_state-*.json"):
            cloudpickle.loads(sorted(path.glob(pattern))[-1].read_bytes())
    except Exception:  # missing (IndexError), truncated (ValueError, EOFError, ...)
        return False
    return True


def run_ray_search(opts: SearchOptions, *, address: str | None = None,
                   gpus_per_trial: float = 0.0, cpus_per_trial: float = 1.0,
                   num_cpus: int | None = None, on_event: OnEvent | None = None) -> int:
    """Run (or continue) the search of ``opts`` with Ray Tune; returns the number of finished
    search trials in the run. ``num_cpus`` caps a local Ray (default: this machine's cores);
    ``on_event`` hears the start and each record written (``SearchEvent``).

    Raises ``DlaNasError`` for bad input and ``KeyboardInterrupt`` after a graceful Ctrl-C
    (everything finished is saved). The process's environment and working directory are as
    before when it returns."""
    check_ray_options(opts, address=address, gpus_per_trial=gpus_per_trial,
                      cpus_per_trial=cpus_per_trial)
    if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
        raise OptionError(f"num_cpus: {num_cpus!r} is not allowed (an integer >= 1)")
    probe_address(address)
    run = open_run(opts, BACKEND, {"ray": {"address": address, "gpus_per_trial": gpus_per_trial,
                                           "cpus_per_trial": cpus_per_trial}}, create=False)
    device = "cuda" if gpus_per_trial > 0 else "cpu"
    driver = Driver(run, opts, device, on_event)
    if run.resumed and (len(driver.numbers()) >= opts.trials
                        and not missing_baselines(run.store, opts.baselines)):
        return len(driver.numbers())
    settings = TrialSettings(space=run.space, out=driver.run,
                             data_dir=str(Path(opts.data_dir).resolve()) if opts.data_dir else None,
                             device=device, threads=max(1, int(cpus_per_trial)),
                             sampler=opts.sampler_name(run.space), cwd=os.getcwd(),
                             deadline=driver.deadline, latency_threads=opts.latency_threads,
                             latency_table=opts.latency_table)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import ray

    was_up = ray.is_initialized()
    interrupted = False
    with tune_environment(), _SigintWatch() as watch:
        try:
            term = signal.getsignal(signal.SIGTERM)
            try:
                connect(address, num_cpus)
            except SystemExit as exc:  # ray.init's own SIGTERM handler, while it starts Ray
                if exc.code != signal.SIGTERM or not callable(term):
                    raise
                raise KeyboardInterrupt from None
            if callable(term) and threading.current_thread() is threading.main_thread():
                # once started, Ray's handler aborts the process: the caller's goes back
                signal.signal(signal.SIGTERM, term)
            check_resources(gpus_per_trial, cpus_per_trial)
            run.create()
            with run.store.lock():  # a new run's first trials are the hand designs
                trials.warm_start(trials.open_study(run.store, run.space, opts), opts,
                                  run.space, run.data)
            driver.emit(SearchEvent("start", run, len(driver.numbers())))
            with driving(driver):
                _run_baselines(driver, settings, opts.baselines, gpus_per_trial,
                               cpus_per_trial)
                interrupted = _run_stages(driver, settings, run.data["resolution"],
                                          gpus_per_trial, cpus_per_trial, watch)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if not was_up:  # also after a Ctrl-C in the middle of ray.init
                ray.shutdown()
    if interrupted:
        raise KeyboardInterrupt
    return len(driver.numbers())


def _run_baselines(driver: Driver, settings: TrialSettings, names: list[str], gpus: float,
                   cpus: float) -> None:
    import ray

    todo = missing_baselines(driver.store, names)
    if not todo:
        return
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(baselines_task)
    for data in ray.get(task.remote(settings, todo)):
        record = TrialRecord.from_dict(data)
        driver.store.append(record)
        driver.recorder.on_record(record)


def _run_stages(driver: Driver, settings: TrialSettings, resolution: int, gpus: float,
                cpus: float, watch: _SigintWatch) -> bool:
    """Restore the last Tune experiment, then start new ones until ``opts.trials`` trials are
    recorded (or the deadline). Returns True when interrupted by Ctrl-C."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    opts, space = driver.opts, driver.space
    ray_dir = Path(driver.run) / "ray"
    ray_dir.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(trial_function(settings), {"cpu": cpus, "gpu": gpus})
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
            index = int(stages[-1].name[len(STAGE):]) + 1 if stages else 0
            if stages and stages[-1] not in restored:
                driver.note(f"{stages[-1]}: Tune's state cannot be restored (the driver died "
                            "while writing it, or another dla-nas version wrote it); its "
                            f"unfinished trials start again in {STAGE}{index}")
            searcher = DlaNasSearcher(driver.run, space, opts, resolution)
            rungs = Rungs.for_budget(driver.epochs)
            if opts.early_stopping == "pareto":
                sched = ParetoScheduler(ParetoStopping(RunStore(driver.run), rungs,
                                                       space.objectives))
            elif opts.early_stopping == "asha":
                accuracy = accuracy_metric(space.objectives)
                sched = ASHAScheduler(time_attr="epoch", metric=accuracy, mode="max",
                                      max_t=driver.epochs, grace_period=rungs.min_epochs,
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
                    name=f"{STAGE}{index}", storage_path=str(ray_dir), verbose=0,
                    callbacks=[DlaNasRecorder(driver.run, driver.epochs, settings.device)],
                    failure_config=tune.FailureConfig(max_failures=1)))
            restored.add(ray_dir / f"{STAGE}{index}")
            fresh = True
        watch.rearm()
        tuner.fit()
        if watch.interrupted():
            return True
        if fresh and len(driver.numbers()) == before:
            break  # nothing could run (e.g. the deadline passed at once)
    return False
