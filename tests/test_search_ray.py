"""The Ray Tune backend: records, ASHA early stopping, Ctrl-C and kill -9 then restore, flags.

Every Ray this file starts has its own short RAY_TMPDIR and a marker in its environment, so
that the processes it leaves (none, if all goes well) are found and killed by pid."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import conftest
import optuna
import pytest
import ray
import torch
import yaml

from dla_nas.errors import OptionError
from dla_nas.results import RunStore, load_run
from dla_nas.search.core import SearchOptions
from dla_nas.search.early_stopping import RungEntry, keep_going
from dla_nas.search.ray_backend import check_ray_options, run_ray_search
from dla_nas.search.space import SearchSpace
from dla_nas.search.trials import open_study

# digits at native 8 px with tiny genomes; a MACs limit that most of the space fits
SPACE = {
    "name": "test-tiny-ray",
    "task": {"dataset": "digits", "resolution": 8},
    "proxy": {"epochs": 4, "batch_size": 128},
    "constraints": {"max_macs": 400_000},  # about 1 genome in 8 is over
    "genome": {
        "stem": {"kernel": 3, "levels": [{"channels": [4, 8]}]},
        "num_stages": {"low": 1, "high": 2},
        "stages": [{"channels": [4, 8], "stride": 1, "level_root": False, "fan_in": [2, 3]},
                   {"channels": [8, 16], "depth": [1, 2]}],
    },
}
MARK = "DLA_NAS_RAY_TEST"


def write_space(tmp_path, **changes):
    return conftest.write_space(tmp_path, SPACE, **changes)


def search_records(out):
    return [r for r in load_run(out) if r.kind == "search"]


def check_run(out, n, epochs):
    """The checks of the Optuna run: numbers 0..n-1 once each, every record complete, no
    genome trained twice."""
    records = search_records(out)
    assert sorted(r.trial for r in records) == list(range(n))
    for r in records:
        assert r.backend == "ray" and r.hash and r.genome and r.macs is not None
        assert r.status in ("ok", "reused", "infeasible")
        if r.status == "infeasible":
            assert r.macs > SPACE["constraints"]["max_macs"] and r.epochs_run == 0
            assert r.val_acc is None
        else:
            assert 0 <= r.val_acc <= 1
            assert len(r.val_acc_per_epoch) == r.epochs_run
            assert r.epochs_run == (r.stopped_rung or epochs)
    trained = [r.hash for r in records if r.epochs_run > 0 and r.reused_from is None]
    assert len(trained) == len(set(trained))
    # each recorded trial's saved training states are deleted (a 500-trial run keeps none)
    assert not list(Path(out, "ray").glob("search-*/trial-*/state.pt"))
    for r in records:
        if r.status == "reused":
            first = next(f for f in records if f.trial == r.reused_from)
            assert first.hash == r.hash and first.reused_from is None
    return records


# ---- processes ----------------------------------------------------------------------------------
# after a kill -9 of the driver, Ray's two agents outlive it by about a minute (they try to
# flush their logs to the dead GCS before exiting); everything else dies with the driver
AGENTS = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")


def marked_pids(token, agents=True):
    """Pids of this user's processes whose environment carries ``MARK=token``."""
    needle = f"{MARK}={token}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                if not agents and (entry / "cmdline").read_bytes().startswith(AGENTS):
                    continue
                pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def kill_marked(token):
    for pid in marked_pids(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(token, seconds=20.0, agents=True):
    end = time.time() + seconds
    while time.time() < end and marked_pids(token, agents):
        time.sleep(0.3)
    return marked_pids(token, agents)


@pytest.fixture
def ray_env(monkeypatch):
    """A private, short temp dir for Ray and a marker; fails if Ray processes remain."""
    token = uuid.uuid4().hex[:12]
    tmp = tempfile.mkdtemp(prefix="dnr-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.setenv(MARK, token)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield token
    if ray.is_initialized():
        ray.shutdown()
    left = wait_gone(token, 15)
    kill_marked(token)
    shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"
    assert not wait_gone(token, 5), "Ray processes survived SIGKILL"


@pytest.fixture
def local_ray(ray_env):
    """A local Ray (2 CPUs, no dashboard, loopback) that run_ray_search joins and leaves up."""
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def driver(space, out, trials, **kw):
    """A driver process, like ``dla-nas search --backend ray`` (SIGTERM taken as the command
    line takes it); exit 130 on Ctrl-C or SIGTERM."""
    code = (
        "import sys\n"
        "from dla_nas.cli import _term_as_interrupt\n"
        "from dla_nas.search.core import SearchOptions\n"
        "from dla_nas.search.ray_backend import run_ray_search\n"
        f"opts = SearchOptions(space={str(space)!r}, trials={trials}, out={str(out)!r}, seed=0,"
        " early_stopping='none')\n"
        "try:\n"
        "    with _term_as_interrupt():\n"
        f"        print('finished', run_ray_search(opts, num_cpus=2, **{kw!r}), flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(130)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_state(out, most_epochs=2, timeout=150):
    """Until, after some trial has a record, a trial without one has saved its state (so a
    restore resumes it) after at most ``most_epochs`` epochs: a trial found near its end could
    finish before the signal arrives."""
    end = time.time() + timeout
    while time.time() < end:
        done = {r.trial for r in search_records(out)} if (out / "trials.jsonl").exists() else set()
        for state in (out / "ray").glob("search-*/trial-*/state.pt"):
            number = int(state.parent.name.split("-")[1])
            if number not in done and done:
                try:  # a file just replaced can vanish
                    epoch = torch.load(state, weights_only=True)["train"]["epoch"]
                except Exception:
                    continue
                if epoch <= most_epochs:
                    return number
        time.sleep(0.05)
    raise AssertionError("no trial saved its state early in time")


# ---- tests --------------------------------------------------------------------------------------
def test_a_rerun_trial_resumes_from_the_newest_state_of_its_number_and_genome(tmp_path):
    """After a kill -9, Tune's last snapshot may predate a trial: it runs again under a new
    Tune id, and its saved states are found by record number, for the same genome, recipe and
    data only (a number whose trial never ran is drawn again with another genome)."""
    from dla_nas.results import TrialRecord
    from dla_nas.search import ray_trial
    from dla_nas.search.trials import SavedTraining

    def save(folder, key, epoch):
        folder.mkdir(parents=True)
        torch.save({"train": {"epoch": epoch}, "elapsed": 50.0, "key": {"trial": key}},
                   folder / ray_trial.STATE_FILE)

    def resumed(number, key):
        record = TrialRecord(trial=number, status="ok", hash="h")
        state = SavedTraining(record, {"trial": key}).resume(
            ray_trial.state_files(str(tmp_path), number))
        if state is None:
            assert record.started_at == 0.0
        else:  # the state's 50 s count toward the trial's wall time, the gap before it not
            assert time.time() - 60 < record.started_at <= time.time() - 50
        return None if state is None else state["epoch"]

    ray_dir = tmp_path / "ray"
    save(ray_dir / "search-1" / "trial-3-new", "k", 1)
    save(ray_dir / "search-0" / "trial-3-old", "k", 4)
    save(ray_dir / "search-0" / "trial-3-other", "other genome", 7)
    save(ray_dir / "search-0" / "trial-13-x", "k", 9)
    save(ray_dir / "search-0" / "trial-31-x", "k", 11)
    (ray_dir / "search-0" / "trial-3-cut").mkdir(parents=True)
    (ray_dir / "search-0" / "trial-3-cut" / "state.pt").write_bytes(b"PK")
    (ray_dir / "search-0" / "trial-3-old" / ".state.pt.x.part").write_bytes(b"PK")
    assert resumed(3, "k") == 4
    assert resumed(13, "k") == 9
    assert resumed(3, "new genome") is None
    shutil.rmtree(ray_dir / "search-0")
    assert resumed(3, "k") == 1
    assert resumed(31, "k") is None


@pytest.mark.parametrize("kw, message", [
    ({"gpus_per_trial": -1}, "--gpus-per-trial: -1 is not allowed (>= 0)"),
    ({"gpus_per_trial": 1.5}, "--gpus-per-trial: 1.5 is not allowed"),
    ({"cpus_per_trial": 0}, "--cpus-per-trial: 0 is not allowed (> 0)"),
    ({"address": "nowhere"}, "--address: 'nowhere' is not allowed"),
    ({"address": "127.0.0.1:1"}, "--address: cannot reach '127.0.0.1:1'"),
])
def test_bad_flags_are_one_clear_error(tmp_path, kw, message):
    opts = SearchOptions(space=str(write_space(tmp_path)), trials=2, out=str(tmp_path / "r"))
    with pytest.raises(OptionError) as info:
        run_ray_search(opts, **kw)
    assert message in str(info.value)
    assert not ray.is_initialized() and not (tmp_path / "r").exists()


def test_options_that_belong_to_the_optuna_backend_are_refused(tmp_path):
    opts = SearchOptions(space="x.yaml", trials=2, out="o", workers=2)
    with pytest.raises(ValueError, match="--workers: 2 is not used with --backend ray"):
        check_ray_options(opts, address=None, gpus_per_trial=0, cpus_per_trial=1)


def test_search_with_asha_then_pareto_writes_records_stops_early_and_extends(tmp_path, local_ray):
    space, out = write_space(tmp_path), tmp_path / "run"
    # random draws: NSGA-II, which sees the whole study, may draw a recorded genome again in
    # so small a space, and the extension below needs new genomes to train
    opts = SearchOptions(space=str(space), trials=6, out=str(out), seed=0, sampler="random",
                         baselines=["plain_cnn_8_16_32"], early_stopping="asha")
    for kw, message in [
            ({"cpus_per_trial": 3}, "--cpus-per-trial: 3 is more than any Ray node"),
            ({"gpus_per_trial": 0.5}, "--gpus-per-trial: 0.5 is more than any Ray node")]:
        with pytest.raises(OptionError, match=message):  # Tune would wait for them forever
            run_ray_search(opts, **kw)
        assert not out.exists() and ray.is_initialized()
    # one trial at a time (2 CPUs each): a fixed order, so ASHA's decisions are reproducible
    events = []
    assert run_ray_search(opts, cpus_per_trial=2, on_event=events.append) == 6
    records = check_run(out, 6, epochs=4)
    stopped = [r for r in records if r.stopped_rung is not None and r.status == "ok"]
    assert stopped, "ASHA stopped no trial"
    for r in stopped:  # a real ASHA decision: at a rung (1 or 2), below a trial that got there
        assert r.stopped_rung in (1, 2) and r.epochs_run == r.stopped_rung
        rivals = [o.val_acc_per_epoch[r.stopped_rung - 1] for o in records if o is not r
                  and o.reused_from is None and len(o.val_acc_per_epoch) >= r.stopped_rung]
        assert rivals and max(rivals) > r.val_acc
    assert any(r.epochs_run == 4 and r.stopped_rung is None for r in records)
    assert [r.name for r in load_run(out) if r.kind == "baseline"] == ["plain_cnn_8_16_32"]
    info = yaml.safe_load((out / "run.yaml").read_text())
    assert info["backend"] == "ray" and info["space"]["name"] == "test-tiny-ray"
    assert [e.kind for e in events] == ["start"] + ["record"] * 7  # a baseline, 6 trials
    assert events[1].record.name == "plain_cnn_8_16_32" and events[-1].finished == 6
    assert {e.record.trial for e in events[2:]} == set(range(6))
    before = (out / "trials.jsonl").read_text()

    # a larger --trials continues the run in a new experiment, here with Pareto early stopping;
    # five stronger entries already at its rung (epoch 2 of 4) make it stop every new trial
    for i in range(5):
        RunStore(out).enter_rung({"trial": 1000 + i, "epoch": 2, "values": [1.0, 1.0 + i / 10]})
    opts.trials, opts.early_stopping = 10, "pareto"
    assert run_ray_search(opts, cpus_per_trial=2) == 10
    assert (out / "trials.jsonl").read_text().startswith(before)
    check_run(out, 10, epochs=4)
    entries = [RungEntry.from_dict(d) for d in RunStore(out).enter_rung({"trial": -1, "epoch": 2})]
    new = {r.trial: r for r in search_records(out) if r.trial >= 6 and r.reused_from is None
           and r.epochs_run > 0}
    assert new and {e.trial for e in entries[5:]} == set(new)
    for i, e in enumerate(entries[5:], 5):  # the same rule and records as the Optuna backend
        assert not keep_going(e, entries[:i], ["maximize", "minimize"], eta=2)
        assert new[e.trial].stopped_rung == 2 and new[e.trial].epochs_run == 2
    assert len([r for r in load_run(out) if r.kind == "baseline"]) == 1
    assert sorted(p.name for p in (out / "ray").iterdir()) == ["search-0", "search-1"]


# no Ctrl-C case: SIGTERM is handed to the SIGINT handler in place (``_term_as_interrupt``),
# here Tune's, so the SIGTERM case runs Ctrl-C's graceful stop (and a case costs ~40 s)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_interrupted_driver_then_the_same_call_finishes_exactly_n(tmp_path, ray_env, sig):
    # 12 epochs: a trial that has saved its state after one of its first two epochs is far from
    # done when the signal arrives (Tune's trials report synchronously: one never runs ahead
    # of the driver)
    space, out = write_space(tmp_path, proxy={"epochs": 12, "batch_size": 128}), tmp_path / "run"
    proc = driver(space, out, 4)
    try:
        number = wait_for_state(out)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig != signal.SIGKILL:  # SIGTERM: not Ray's handler, which aborts the driver
        assert proc.returncode == 130, output
        assert "interrupted" in output and "Traceback" not in output
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not wait_gone(ray_env, agents=False), "the driver's Ray outlived it"
    kill_marked(ray_env)  # Ray's agents, after a kill -9 (they would exit within a minute)
    kept = (out / "trials.jsonl").read_text()
    assert number not in {r.trial for r in search_records(out)}

    opts = SearchOptions(space=str(space), trials=4, out=str(out), seed=0, early_stopping="none")
    events = []
    assert run_ray_search(opts, num_cpus=2, on_event=events.append) == 4
    assert (out / "trials.jsonl").read_text().startswith(kept)  # nothing lost or rewritten
    check_run(out, 4, epochs=12)
    assert len((out / "trials.jsonl").read_text().splitlines()) == 4  # no duplicate records
    resumed = next(e for e in events if e.kind == "record" and e.record.trial == number)
    assert resumed.record.status == "ok"
    assert resumed.resumed_after is not None  # from its saved state, not from scratch


def test_balanced_accuracy_objective_a_step_budget_and_a_searched_lr(tmp_path, local_ray):
    # half of the 1077 train images at 8 px, batch 128: 4 steps an epoch, so min_steps 10
    # means 3 epochs, and ASHA's max_t is 3
    space = write_space(tmp_path, objectives={"val_balanced_acc": "maximize", "macs": "minimize"},
                        proxy={"epochs": 1, "min_steps": 10, "batch_size": 128,
                               "train_fraction": 0.5, "lr": [0.05, 0.1]})
    out = tmp_path / "run"
    opts = SearchOptions(space=str(space), trials=2, out=str(out), seed=0, early_stopping="asha")
    assert run_ray_search(opts, cpus_per_trial=2) == 2
    info = yaml.safe_load((out / "run.yaml").read_text())
    assert info["data"]["train_size"] // 128 == 4
    trained = [r for r in search_records(out) if r.status == "ok"]
    assert trained
    for r in trained:
        assert r.epochs_run == (3 if r.stopped_rung is None else r.stopped_rung)
        assert r.val_balanced_acc is not None and len(r.val_confusion) == 10
    for r in search_records(out):  # the lr is drawn with the genome and recorded with it
        assert set(r.recipe) == {"lr"} and r.recipe["lr"] in (0.05, 0.1)
        assert r.key == f"{r.hash}@lr={r.recipe['lr']!r}"


def test_timeout_ends_a_running_ray_trial_and_its_proposal_is_drawn_again(tmp_path, local_ray):
    """As with the Optuna backend: a trial that would train for minutes ends at the epoch in
    which --timeout passes, leaves no record, and its proposal waits for the next run."""
    space = write_space(tmp_path, proxy={"epochs": 5000, "batch_size": 128}, constraints={})
    out = tmp_path / "run"
    opts = SearchOptions(space=str(space), trials=1, out=str(out), seed=0,
                         early_stopping="none", timeout=15)
    assert run_ray_search(opts, cpus_per_trial=2) == 0
    assert not RunStore(out).search_records()  # 5,000 epochs would have ended with a record
    study = open_study(RunStore(out), SearchSpace.from_yaml(space), opts)
    drawn, again = study.get_trials()  # drawn and cut, then queued with the same genome
    assert drawn.state == optuna.trial.TrialState.FAIL
    assert again.state == optuna.trial.TrialState.WAITING
    assert again.system_attrs["fixed_params"] == drawn.params


def test_the_ray_searcher_draws_the_hand_designs_first_and_survives_pickling(tmp_path):
    """The searcher asks the run's study, whose first trials are the warm start's hand
    designs; Tune pickles it (a sampler holding a lock must not travel), and a copy carries
    on from the same study with the trials in flight."""
    import pickle

    from dla_nas.arch import zoo
    from dla_nas.results import TrialRecord
    from dla_nas.search import trials
    from dla_nas.search.core import warm_start_points
    from dla_nas.search.ray_searcher import DlaNasSearcher
    from dla_nas.search.space import SearchSpace

    data8 = {"resolution": 8, "in_chans": 1, "num_classes": 10}
    raw = dict(conftest.HAND_SPACE, baselines=["plain_cnn_8_16_32", "plain_cnn"])
    raw["genome"] = {**raw["genome"], "stem": {**raw["genome"]["stem"], "channels": [8, 16]},
                     "stages": [dict(raw["genome"]["stages"][0], channels=[16, 32]),
                                dict(raw["genome"]["stages"][1], channels=[32, 64])]}
    space = SearchSpace.from_dict(raw)
    store = RunStore(tmp_path)
    for sampler in ("nsga2", "tpe", "random"):
        opts = SearchOptions(space="x", trials=4, out=str(tmp_path), sampler=sampler,
                             warm_start="baselines")
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
        trials.warm_start(trials.open_study(store, space, opts), opts, space, data8)
        searcher = DlaNasSearcher(str(tmp_path), space, opts, 8)
        first = searcher.suggest("t0")["dla"]
        copy = pickle.loads(pickle.dumps(searcher))  # as Tune saves it with its experiment
        second = copy.suggest("t1")["dla"]
        assert [first["hash"], second["hash"]] == [  # the cheapest first
            zoo.load(n).canonical_hash() for n in warm_start_points(opts, space, data8)]
        assert [first["number"], second["number"]] == [0, 1]
        store.append(TrialRecord(0, "ok", first["hash"], val_acc=0.5, macs=10, params=1))
        copy.on_trial_complete("t0", {"record": json.dumps(store.records()[0].to_dict())})
        study = trials.open_study(store, space, opts)
        assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
        assert copy.suggest("t2")["dla"]["number"] == 2  # 0 recorded, 1 in flight


def random_run(tmp_path):
    """``SPACE``, options that draw at random with no warm start, and a run's store in
    ``tmp_path``: a searcher's run without Tune."""
    from dla_nas.search.space import SearchSpace

    opts = SearchOptions(space="x", trials=4, out=str(tmp_path), sampler="random",
                         warm_start="none")
    return SearchSpace.from_dict(SPACE), opts, RunStore(tmp_path)


def test_a_trial_tune_gives_up_on_is_recorded_at_once_and_its_number_not_drawn_again(tmp_path):
    """Tune gives up on a trial whose worker died twice: its failed record is written at
    once, so the searcher's next trial takes the next number, and the study hears FAIL."""
    from types import SimpleNamespace

    from dla_nas.search import trials
    from dla_nas.search.core import Run
    from dla_nas.search.ray_searcher import DlaNasRecorder, DlaNasSearcher, Driver, driving

    space, opts, store = random_run(tmp_path)
    run = Run(space, store, {"train_size": 100}, {}, resumed=False)
    events = []
    driver = Driver(run, opts, "cpu", events.append)
    searcher = DlaNasSearcher(driver.run, space, opts, 8)
    with driving(driver):
        config = searcher.suggest("t0")
        assert config["dla"]["number"] == 0
        searcher.on_trial_complete("t0", None, error=True)  # Tune tells the searcher first
        dead = SimpleNamespace(config=config, path=str(tmp_path / "ray" / "search-0" / "t0"),
                               get_error=lambda: RuntimeError("worker died\nOOM killed"))
        DlaNasRecorder(driver.run, 4, "cpu").on_trial_error(0, [], dead)
        (record,) = search_records(tmp_path)
        assert record.trial == 0 and record.status == "failed"
        assert record.reason == "Ray: OOM killed" and record.hash == config["dla"]["hash"]
        assert events[-1].kind == "record" and events[-1].record.trial == 0
        assert searcher.suggest("t1")["dla"]["number"] == 1
    study = trials.open_study(store, space, opts)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


def test_a_trial_a_dead_driver_drew_but_never_ran_is_drawn_again(tmp_path):
    """A driver killed between drawing a trial and Tune saving it leaves a RUNNING study
    trial: the next searcher fails it and draws its parameters again (a warm start's hand
    design is not lost)."""
    import socket

    from dla_nas.search import trials
    from dla_nas.search.ray_searcher import DlaNasSearcher

    space, opts, store = random_run(tmp_path)
    study = trials.open_study(store, space, opts)
    lost = study.ask()
    drawn = trials.propose(space, lost, 8)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost.set_user_attr("pid", dead.pid)
    lost.set_user_attr("host", socket.gethostname())
    again = DlaNasSearcher(str(tmp_path), space, opts, 8).suggest("t0")["dla"]
    assert (again["hash"], again["number"]) == (drawn.hash, 0)
    states = [t.state for t in trials.open_study(store, space, opts).trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING]


def test_a_tune_state_that_cannot_be_restored_is_said_and_the_run_goes_on(tmp_path, local_ray):
    """A Tune experiment whose state files are broken (the driver died writing them), or
    that holds Tune checkpoints (dla-nas 0.2's, which a snapshot could name after Tune had
    deleted them), is named in a note to the display, and a new experiment runs the trials."""
    space, out = write_space(tmp_path, proxy={"epochs": 1, "batch_size": 128}), tmp_path / "run"
    opts = SearchOptions(space=str(space), trials=1, out=str(out), seed=0, early_stopping="none")
    assert run_ray_search(opts, cpus_per_trial=2) == 1
    broken = out / "ray" / "search-0"
    for state in broken.glob("experiment_state-*.json"):
        state.write_text("{")  # half written
    opts.trials = 2
    events = []
    assert run_ray_search(opts, cpus_per_trial=2, on_event=events.append) == 2
    (note,) = [e for e in events if e.kind == "note"]
    assert "cannot be restored" in note.message and "search-1" in note.message
    check_run(out, 2, epochs=1)
    (next((out / "ray" / "search-1").glob("trial-1-*")) / "checkpoint_000000").mkdir()  # 0.2's
    opts.trials = 3
    events.clear()
    assert run_ray_search(opts, cpus_per_trial=2, on_event=events.append) == 3
    (note,) = [e for e in events if e.kind == "note"]
    assert "search-1: Tune's state cannot be restored" in note.message
    assert "search-2" in note.message
    check_run(out, 3, epochs=1)


def test_a_held_twin_past_the_deadline_is_queued_again_by_a_restored_searcher(tmp_path):
    """A proposal held back for its twin, in a searcher Tune restored (which has asked the
    study nothing itself), is failed and queued again with its name when --timeout passes."""
    from dla_nas.search import trials
    from dla_nas.search.core import Run
    from dla_nas.search.ray_searcher import DlaNasSearcher, Driver, driving

    space, opts, store = random_run(tmp_path)
    study = trials.open_study(store, space, opts)
    drawn = study.ask()
    trials.propose(space, drawn, 8)
    study.tell(drawn, state=optuna.trial.TrialState.FAIL)
    for _ in range(2):  # twins: the second waits for the first's record
        study.enqueue_trial(drawn.params, user_attrs={trials.NAME: "mine"})
    searcher = DlaNasSearcher(str(tmp_path), space, opts, 8)
    assert searcher.suggest("t0")["dla"]["name"] == "mine"
    assert searcher.suggest("t1") is None  # held
    restored = pickle.loads(pickle.dumps(searcher))
    opts.timeout = 0.001
    with driving(Driver(Run(space, store, {"train_size": 100}, {}, resumed=False), opts,
                        "cpu", lambda event: None)):
        time.sleep(0.01)  # past the deadline
        assert restored.suggest("t2") == DlaNasSearcher.FINISHED
    last = trials.open_study(store, space, opts).trials
    assert last[2].state == optuna.trial.TrialState.FAIL  # the held twin
    assert last[-1].state == optuna.trial.TrialState.WAITING
    assert last[-1].user_attrs == {trials.NAME: "mine", "retry_of": 2}
