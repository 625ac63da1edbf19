"""The Optuna search: records, resume after kill -9 and Ctrl-C, workers, dedup, failures."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import conftest
import optuna
import pytest
import torch
import yaml

from dla_nas.analysis.confirm import hand_design_hashes
from dla_nas.arch import zoo
from dla_nas.arch.cost import genome_cost
from dla_nas.cli import main
from dla_nas.errors import OptionError
from dla_nas.results import RunStore, TrialRecord, load_run
from dla_nas.search.core import SearchOptions, make_sampler
from dla_nas.search.optuna_backend import counts, recover, run_trial
from dla_nas.search.space import SearchSpace
from dla_nas.search.trials import open_study

# digits at native 8 px with tiny genomes: about a second per trial
SPACE = {
    "name": "test-tiny",
    "task": {"dataset": "digits", "resolution": 8},
    "proxy": {"epochs": 2, "batch_size": 128},
    "constraints": {"max_macs": 400_000},
    "genome": {
        "stem": {"kernel": 3, "levels": [{"channels": [4, 8]}]},
        "num_stages": {"low": 1, "high": 2},
        "stages": [{"channels": [8, 16], "stride": 1, "level_root": False, "fan_in": [2, 3]},
                   {"channels": [16, 32], "depth": [1, 2]}],
    },
}


def write_space(tmp_path, **changes):
    return conftest.write_space(tmp_path, SPACE, **changes)


def test_tpe_models_conditional_parameters_in_groups_and_says_nothing_of_it():
    """A genome's parameters are conditional; Optuna's ``group`` option is experimental and
    warns, which a user of ``dla-nas search`` must not see."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = make_sampler("tpe", 0)
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._group


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dla_nas.cli", *args], capture_output=True,
                          text=True, **kw)


def search_records(out):
    return [r for r in load_run(out) if r.kind == "search"]


def assert_no_genome_trained_twice(records):
    trained = [r.hash for r in records if r.epochs_run > 0 and r.reused_from is None]
    assert len(trained) == len(set(trained))
    for r in records:
        if r.status == "reused":
            assert r.reused_from is not None and r.reused_from != r.trial
        if r.reused_from is not None:  # a duplicate points at the first record of its genome
            first = next(f for f in records if f.trial == r.reused_from)
            assert first.hash == r.hash and first.reused_from is None


def test_search_writes_records_and_resumes_without_retraining(tmp_path):
    space, out = write_space(tmp_path), tmp_path / "run"
    first = cli("search", "--space", str(space), "--trials", "4", "--out", str(out),
                "--baselines", "plain_cnn_8_16_32")
    assert first.returncode == 0, first.stderr
    records = search_records(out)
    assert sorted(r.trial for r in records) == [0, 1, 2, 3]
    for r in records:
        assert r.macs is not None and r.params is not None and r.hash and r.genome
        assert r.status in ("ok", "reused", "infeasible")
        if r.status == "ok":
            assert 0 <= r.val_acc <= 1 and len(r.val_acc_per_epoch) == 2 and r.train_seconds > 0
        if r.status == "infeasible":
            assert r.macs > 400_000 and r.val_acc is None and r.epochs_run == 0
    assert [r.name for r in load_run(out) if r.kind == "baseline"] == ["plain_cnn_8_16_32"]
    info = yaml.safe_load((out / "run.yaml").read_text())
    assert info["space"]["name"] == "test-tiny" and info["seed"] == 0 and "torch" in info["versions"]
    before = (out / "trials.jsonl").read_text()

    second = cli("search", "--space", str(space), "--trials", "6", "--out", str(out),
                 "--baselines", "plain_cnn_8_16_32")
    assert second.returncode == 0, second.stderr
    assert "resuming: 4 trials finished" in second.stdout + second.stderr
    assert (out / "trials.jsonl").read_text().startswith(before)  # nothing rewritten
    records = search_records(out)
    assert sorted(r.trial for r in records) == list(range(6))
    assert len([r for r in load_run(out) if r.kind == "baseline"]) == 1  # not re-run
    assert_no_genome_trained_twice(records)

    status = cli("status", str(out))
    assert status.returncode == 0 and "Pareto front" in status.stdout and "test-tiny" in status.stdout


def child_pids(pid: int) -> list[int]:
    """The children of a process (Linux /proc)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def alive(pid: int) -> bool:
    """Running, not gone and not a zombie (an orphan's reaper may be slow)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_then_resume_loses_nothing_and_retrains_nothing(tmp_path):
    space, out = write_space(tmp_path, proxy={"epochs": 3, "batch_size": 64}), tmp_path / "run"
    args = [sys.executable, "-m", "dla_nas.cli", "search", "--space", str(space), "--trials", "8",
            "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.joinpath("trials.jsonl").exists() and len(search_records(out)) >= 2:
            break
        time.sleep(0.2)
    workers = child_pids(proc.pid)
    proc.kill()
    proc.wait()
    killed_at = search_records(out)
    assert 2 <= len(killed_at) < 8
    deadline = time.time() + 30  # the workers notice their driver is gone and exit
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert workers and not [pid for pid in workers if alive(pid)]
    lines_before = (out / "trials.jsonl").read_text()
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (out / "trials.jsonl").read_text().startswith(lines_before)
    records = search_records(out)
    assert len(records) == 8 and len({r.trial for r in records}) == 8
    assert_no_genome_trained_twice(records)
    study = optuna.load_study(study_name="test-tiny", storage=optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    # a trial killed mid-training was retried with the same parameters
    for t in study.trials:
        if t.state == optuna.trial.TrialState.FAIL:
            retry = [u for u in study.trials if u.user_attrs.get("retry_of") == t.number]
            assert len(retry) == 1 and retry[0].params == t.params


@pytest.mark.parametrize("sig, sigint", [(signal.SIGINT, signal.SIG_DFL),
                                         (signal.SIGTERM, signal.SIG_IGN)],
                         ids=["ctrl-c", "sigterm-nohup"])
def test_ctrl_c_or_sigterm_stops_gracefully_and_the_same_command_continues(tmp_path, sig,
                                                                          sigint):
    """SIGINT as from a terminal; SIGTERM (kill, timeout, a job scheduler) to a search started
    in the background of a script (``nohup ... &``: SIGINT ignored, and inherited so by the
    workers, which the driver stops with SIGINT)."""
    space, out = write_space(tmp_path, proxy={"epochs": 3, "batch_size": 64}), tmp_path / "run"
    args = [sys.executable, "-m", "dla_nas.cli", "search", "--space", str(space), "--trials", "6",
            "--out", str(out), "--workers", "2"]
    # a job started in the background of a script inherits SIGINT ignored, and Python then
    # keeps ignoring it (a CI runner may start pytest that way): set it as the case says
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "trials.jsonl").exists():
        time.sleep(0.2)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert "run the same command to continue" in " ".join(output.split())
    again = cli("search", "--space", str(space), "--trials", "6", "--out", str(out), timeout=300)
    assert again.returncode == 0, again.stderr
    records = search_records(out)
    assert sorted(r.trial for r in records) == sorted({r.trial for r in records})
    assert len(records) == 6
    assert_no_genome_trained_twice(records)


def test_status_says_which_stopped_trials_kept_their_training(tmp_path, capsys):
    from test_bad_input import make_run  # a run with two records

    store = RunStore(make_run(tmp_path / "run"))
    assert main(["status", str(store.path)]) == 0
    assert "kept their last epoch" not in capsys.readouterr().out
    store.states.mkdir()
    for key in ("a", "b"):
        store.trial_state(key).write_bytes(b"saved")
    assert main(["status", str(store.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 trial(s) stopped in training kept their last epoch" in out


def test_status_tells_trials_in_training_from_those_a_stopped_search_left(tmp_path, capsys):
    from test_bad_input import SPACE as TINY_SPACE  # named "tiny"
    from test_bad_input import make_run  # a run with two records

    from dla_nas.search.core import journal_storage

    store = RunStore(make_run(tmp_path / "run"))
    info = yaml.safe_load(store.run_yaml.read_text())
    store.run_yaml.write_text(yaml.safe_dump({**info, "space": TINY_SPACE}))
    study = optuna.create_study(study_name="tiny", storage=journal_storage(store),
                                directions=["maximize", "minimize"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid, host in [(os.getpid(), socket.gethostname()), (os.getpid(), socket.gethostname()),
                      (gone.pid, socket.gethostname()), (gone.pid, "elsewhere")]:
        trial = study.ask()
        trial.set_user_attr("pid", pid)
        trial.set_user_attr("host", host)
    assert main(["status", str(store.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    by = sorted([f"pid {gone.pid} on elsewhere", f"pid {os.getpid()} on {socket.gethostname()}"])
    assert f"in training now: 3 trial(s), by {', '.join(by)}" in out
    assert "1 trial(s) left unfinished by a search that stopped" in out

    unnamed = {k: v for k, v in TINY_SPACE.items() if k != "name"}  # named by its file's stem
    store.run_yaml.write_text(yaml.safe_dump({**info, "space": unnamed,
                                              "space_path": "spaces/tiny.yaml"}))
    assert main(["status", str(store.path)]) == 0
    assert "in training now: 3 trial(s)" in " ".join(capsys.readouterr().out.split())
    lines = store.journal.read_text().splitlines(keepends=True)
    store.journal.write_text("".join(lines[:2] + [lines[2][:10] + "\n"] + lines[3:]))
    assert main(["status", str(store.path)]) == 0  # the table stands; the journal is named
    out = " ".join(capsys.readouterr().out.split())
    assert f"warning: {store.journal}: cannot be read" in out and "Traceback" not in out


def test_a_worker_stops_on_the_drivers_sigint_even_when_it_inherited_it_ignored():
    """The driver stops its workers with SIGINT; a search started with SIGINT ignored
    (``nohup ... &``) passes that on to them, and they would train on until killed. A SIGTERM
    to the whole process group (``timeout``, a job scheduler) stops them as gracefully."""
    code = ("import os, signal\n"
            "from dla_nas.search.optuna_backend import _worker_signals\n"
            "_worker_signals(os.getppid())\n"
            "for sig in (signal.SIGINT, signal.SIGTERM):\n"
            "    try:\n"
            "        os.kill(os.getpid(), sig)\n"
            "        signal.sigtimedwait([], 5)\n"
            "    except KeyboardInterrupt:\n"
            "        print('stopped')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                       signal.SIG_IGN))
    assert done.stdout == "stopped\nstopped\n", done.stderr


def test_two_workers_finish_exactly_n_trials(tmp_path):
    space, out = write_space(tmp_path), tmp_path / "run"
    result = cli("search", "--space", str(space), "--trials", "5", "--out", str(out),
                 "--workers", "2", "--sampler", "random")
    assert result.returncode == 0, result.stderr
    records = search_records(out)
    assert sorted(r.trial for r in records) == [0, 1, 2, 3, 4]
    assert len({r.worker for r in records}) == 2


def test_two_searches_on_one_out_finish_n_trials_and_say_so_truly(tmp_path):
    """Two ``search`` commands on one --out share the study: together they finish exactly N,
    and one that ends while the other still trains says so (not "--timeout")."""
    space, out = write_space(tmp_path, proxy={"epochs": 3, "batch_size": 128}), tmp_path / "run"
    cli("search", "--space", str(space), "--trials", "1", "--out", str(out))  # run.yaml first
    args = [sys.executable, "-m", "dla_nas.cli", "search", "--space", str(space), "--trials",
            "4", "--out", str(out), "--sampler", "random"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sorted(r.trial for r in search_records(out)) == [0, 1, 2, 3]
    for err in errs:
        assert "--timeout" not in err
        assert "stopped after" not in err or "still running in another process" in err


def test_same_genome_is_trained_once_and_reused(tmp_path):
    fixed = json.loads(json.dumps(SPACE["genome"]))
    fixed["stem"]["levels"] = [{"channels": 4}]
    fixed["num_stages"] = 1
    fixed["stages"] = [{"channels": 8, "stride": 1, "level_root": False}]
    space, out = write_space(tmp_path, genome=fixed), tmp_path / "run"
    result = cli("search", "--space", str(space), "--trials", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = sorted(search_records(out), key=lambda r: r.trial)
    assert [r.status for r in records] == ["ok", "reused", "reused"]
    assert {r.reused_from for r in records[1:]} == {0}
    assert len({r.hash for r in records}) == 1
    assert records[1].val_acc == records[0].val_acc and records[1].epochs_run == 2


class _Exploding:
    """An evaluator whose training raises, like an out-of-memory error in one genome."""

    worker, device = "test", "cpu"

    class data:
        resolution = 8

    def build(self, genome):
        raise RuntimeError("CUDA out of memory (simulated)")

    def new_record(self, trial, **fields):
        return TrialRecord(trial=trial, status="ok", worker=self.worker, device=self.device,
                           input_shape=[1, 8, 8], num_classes=10, **fields)


def test_workers_of_one_study_draw_different_genomes(tmp_path):
    """Each worker seeds its sampler apart: with one seed, six workers on a GPU drew the same
    random genomes in turn (25 distinct of 60 trials)."""
    space = SearchSpace.from_yaml(write_space(tmp_path))
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    opts = SearchOptions(space="space.yaml", trials=6, out=str(store.path), sampler="random")
    drawn = []
    for worker in (0, 1):
        study = open_study(store, space, opts, worker=worker)
        drawn.append([space.sample_trial(study.ask(), 8)[0].canonical_hash() for _ in range(3)])
    assert drawn[0] != drawn[1]


def test_a_resumed_worker_draws_afresh(tmp_path):
    """A restart reopens the study: its sampler must not replay the draws made before."""
    space = SearchSpace.from_yaml(write_space(tmp_path))
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    opts = SearchOptions(space="space.yaml", trials=6, out=str(store.path), sampler="random")
    first = [space.sample_trial(open_study(store, space, opts).ask(), 8)[0].canonical_hash()]
    study = open_study(store, space, opts)  # the same command again, one trial later
    resumed = [space.sample_trial(study.ask(), 8)[0].canonical_hash() for _ in range(3)]
    assert first[0] not in resumed


def _study_and_store(tmp_path):
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    study = optuna.create_study(directions=["maximize", "minimize"])
    return study, store


def test_a_failing_genome_is_recorded_and_the_search_goes_on(tmp_path):
    space = SearchSpace.from_yaml(write_space(tmp_path))
    study, store = _study_and_store(tmp_path)
    trial = study.ask()
    run_trial(study, trial, space, _Exploding(), store)
    (record,) = store.records()
    assert record.status == "failed" and "out of memory" in record.reason
    assert record.input_shape == [1, 8, 8] and record.num_classes == 10  # the data shape too
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    recover(study, store, space)  # recorded failures are not retried
    assert len(study.trials) == 1
    assert counts(study, store) == (1, 0)


def test_recover_retries_a_dead_workers_trial_and_completes_a_recorded_one(tmp_path):
    space = SearchSpace.from_yaml(write_space(tmp_path))
    study, store = _study_and_store(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for number in range(2):
        t = study.ask()
        t.suggest_int("x", 0, 9)
        t.set_user_attr("pid", dead.pid)
        t.set_user_attr("host", socket.gethostname())
    store.append(TrialRecord(trial=1, status="ok", hash="abc", val_acc=0.5, macs=10))
    recover(study, store, space)
    trials = study.get_trials()
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert trials[1].state == optuna.trial.TrialState.COMPLETE and trials[1].values == [0.5, 10.0]
    assert trials[2].state == optuna.trial.TrialState.WAITING
    assert trials[2].user_attrs["retry_of"] == 0
    recover(study, store, space)  # idempotent: no second retry
    assert len(study.get_trials()) == 3
    retry = study.ask()  # the retry replays the failed trial's parameters
    assert retry.number == 2 and retry.suggest_int("x", 0, 9) == trials[0].params["x"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_a_missing_device_is_refused_before_the_run_folder_is_made(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["search", "--space", str(write_space(tmp_path)), "--trials", "2",
                 "--out", str(out), "--device", "cuda"]) == 2
    assert "device: 'cuda' is not available here" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--baselines", "vgg16"], "--baselines: 'vgg16' is not known"),
    (["--space", "no-such-space.yaml"], "no-such-space.yaml: cannot read"),
])
def test_bad_search_input_is_one_clear_line(tmp_path, argv, message, capsys):
    space = write_space(tmp_path)
    base = ["search", "--space", str(space), "--trials", "2", "--out", str(tmp_path / "r")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_search_flags_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["search", "--space", "x.yaml", "--workers", "0"])
    assert "'0' is not allowed (an integer >= 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "--space", "x.yaml", "--sampler", "grid"])
    assert "invalid choice: 'grid'" in capsys.readouterr().err


def test_a_run_refuses_another_space(tmp_path, capsys):
    out = tmp_path / "run"
    RunStore(out).create_or_check({"space_fingerprint": "aaaa", "space": {"name": "other"}})
    assert main(["search", "--space", str(write_space(tmp_path)), "--out", str(out)]) == 2
    assert "made with another search space" in capsys.readouterr().err


def test_options_check():
    space = SearchSpace.from_dict(SPACE)
    assert SearchOptions(space="x", trials=1, out="o").sampler_name(space) == "nsga2"
    with pytest.raises(Exception, match="--warm-start: 'zoo' is not allowed"):
        SearchOptions(space="x", trials=1, out="o", warm_start="zoo").check()


def test_a_new_run_starts_from_the_spaces_hand_designs_and_a_resume_does_not(tmp_path, capsys):
    """--warm-start baselines (the default with TPE): the first trial is the space's
    baseline, named after it; the same command continued draws it no more."""
    space, out = conftest.write_space(tmp_path, conftest.HAND_SPACE), tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "2", "--out", str(out)]) == 0
    records = sorted(search_records(out), key=lambda r: r.trial)
    assert records[0].hash == zoo.load("plain_cnn_8_16_32").canonical_hash()
    assert [r.name for r in records] == ["plain_cnn_8_16_32", ""]
    assert records[0].status == "ok" and records[0].epochs_run == 1
    assert main(["search", "--space", str(space), "--trials", "4", "--out", str(out)]) == 0
    records = search_records(out)
    assert len(records) == 4 and [r.trial for r in records if r.name] == [0]
    assert "reused" not in {r.status for r in records}
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "plain_cnn_8_16_32" in capsys.readouterr().out
    assert records[0].hash in hand_design_hashes(out)  # confirm's comparison leaves it out
    assert RunStore(out).info()["options"]["warm_start"] == "baselines"


def test_the_front_table_names_a_hand_design(tmp_path):
    from rich.console import Console

    from dla_nas.cli.render import print_summary

    store = RunStore(tmp_path)
    store.append(TrialRecord(0, "ok", "aa", name="plain_cnn_8_16_32", val_acc=0.9, macs=100,
                             params=10, epochs_run=2))
    store.append(TrialRecord(1, "ok", "bb", val_acc=0.95, macs=200, params=20, epochs_run=2))
    console = Console(record=True, width=200)
    print_summary(console, store, [("val_acc", "maximize"), ("macs", "minimize")])
    text = console.export_text()
    assert "named on the front: trial 0 is plain_cnn_8_16_32\n" in text and "bb" in text


def test_a_hand_design_of_the_warm_start_trains_with_the_nominal_recipe(tmp_path):
    """Where the space searches lr, the hand design is drawn with the lr a baseline gets."""
    from dla_nas.search.optuna_backend import start

    proxy = dict(conftest.HAND_SPACE["proxy"], lr={"low": 0.02, "high": 0.2, "log": True})
    path = conftest.write_space(tmp_path, conftest.HAND_SPACE, proxy=proxy)
    _, study = start(SearchOptions(space=str(path), trials=1, out=str(tmp_path / "run")))
    space = SearchSpace.from_yaml(path)
    genome, _, recipe = space.sample_trial(study.ask(), 8)
    assert genome.canonical_hash() == zoo.load("plain_cnn_8_16_32").canonical_hash()
    assert recipe.to_dict() == {"lr": space.proxy.lr} and 0.02 < space.proxy.lr < 0.2


def test_timeout_ends_a_running_trial_and_a_resume_draws_it_again(tmp_path):
    """A trial that would train for minutes ends at the epoch in which --timeout passes,
    leaves no record, and is drawn again by the next run of the command (it once ran 10
    minutes past a --timeout of 600)."""
    proxy = dict(conftest.HAND_SPACE["proxy"], epochs=5000)
    space = conftest.write_space(tmp_path, conftest.HAND_SPACE, proxy=proxy)
    out = tmp_path / "run"
    started = time.monotonic()
    assert main(["search", "--space", str(space), "--trials", "1", "--out", str(out),
                 "--timeout", "20", "--warm-start", "none", "--early-stopping", "none"]) == 0
    assert time.monotonic() - started < 120  # 5,000 epochs would take far longer
    assert not RunStore(out).search_records()
    study = open_study(RunStore(out), SearchSpace.from_yaml(space),
                       SearchOptions(space=str(space), trials=1, out=str(out)))
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.FAIL]
    with RunStore(out).lock():
        recover(study, RunStore(out), SearchSpace.from_yaml(space))
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].system_attrs["fixed_params"] == study.trials[0].params


def test_an_interrupted_trial_is_retried_from_its_last_epoch(tmp_path):
    """Ctrl-C (or --timeout, or a kill) in a trial's third epoch: its retry, which draws the
    same, trains epochs 3 and 4 only, to the record of a trial never interrupted."""
    from dla_nas.search.evaluator import ProxyEvaluator

    proxy = dict(conftest.HAND_SPACE["proxy"], epochs=4)
    space = SearchSpace.from_yaml(conftest.write_space(tmp_path, conftest.HAND_SPACE,
                                                       proxy=proxy))
    evaluator = ProxyEvaluator(space, "cpu")
    seen = []

    def watch(record, report):
        seen.append(report.epoch)
        if report.epoch == 2 and len(seen) == 2:  # its state is saved before this is called
            raise KeyboardInterrupt

    study, store = _study_and_store(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_trial(study, study.ask(), space, evaluator, store, stopping=watch)
    key = study.trials[0].user_attrs["key"]
    saved = torch.load(store.trial_state(key), weights_only=True)
    assert saved["train"]["epoch"] == 2
    # as if the first two epochs took 1,000 s and the run then stood still: the retry's wall
    # time counts those seconds, not the standstill
    torch.save({**saved, "elapsed": 1000.0}, store.trial_state(key))
    resumed_at = time.time()
    recover(study, store, space)  # the retry, with the same parameters
    retry = run_trial(study, study.ask(), space, evaluator, store, stopping=watch)
    assert seen == [1, 2, 3, 4] and retry.epochs_run == 4 and retry.key == key
    assert resumed_at - 1000 <= retry.started_at <= time.time() - 1000
    assert not store.trial_state(key).exists()  # recorded: spent

    again, fresh = optuna.create_study(directions=space.directions), RunStore(tmp_path / "b")
    again.enqueue_trial(study.trials[0].params)
    whole = run_trial(again, again.ask(), space, evaluator, fresh)
    assert retry.val_acc_per_epoch == whole.val_acc_per_epoch and retry.macs == whole.macs

    # past --timeout at a rung, the rung decides first: stopped there, the trial is recorded
    late = optuna.create_study(directions=space.directions)
    late.enqueue_trial(study.trials[0].params)
    judged = run_trial(late, late.ask(), space, evaluator, RunStore(tmp_path / "c"),
                       stopping=lambda record, report: True, deadline=time.time())
    assert judged is not None and judged.stopped_rung == 1


def test_the_warm_start_goes_cheapest_first_and_keeps_within_the_constraints(tmp_path):
    """A CPU budget is spent on the cheap hand designs first; one over a constraint is not
    trained at all (the magnetic-tile search began with the 39M and 49M-MAC designs)."""
    from dla_nas.search.core import warm_start_points

    names = ["plain_cnn_32_64_128", "plain_cnn_8_16_32", "plain_cnn"]
    raw = dict(conftest.HAND_SPACE, baselines=names)
    raw["genome"] = dict(raw["genome"], num_stages=[2, 3],
                         stem={"kernel": 3, "channels": [8, 16, 32], "pool": [False, True]},
                         stages=[{"channels": [8, 16, 32, 64, 128], "aggregation": ["none", "tree"],
                                  "stride": 2, "downsample": ["strided", "pool_last"],
                                  "level_root": False}] * 3)
    data = {"resolution": 8, "in_chans": 1, "num_classes": 10}
    opts = SearchOptions(space="x", trials=1, out=str(tmp_path), warm_start="baselines")
    space = SearchSpace.from_dict(raw)
    assert list(warm_start_points(opts, space, data)) == [
        "plain_cnn_8_16_32", "plain_cnn", "plain_cnn_32_64_128"]
    macs = genome_cost(zoo.load("plain_cnn"), (1, 8, 8), 10).macs
    capped = SearchSpace.from_dict({**raw, "constraints": {"max_macs": macs}})
    assert list(warm_start_points(opts, capped, data)) == ["plain_cnn_8_16_32", "plain_cnn"]


@pytest.mark.parametrize("sampler, warm_start, enqueued", [
    (None, None, 1), ("nsga2", None, 0), ("tpe", "none", 0), ("nsga2", "baselines", 1),
    ("random", None, 1)])
def test_which_new_runs_start_from_the_hand_designs(tmp_path, sampler, warm_start, enqueued):
    from dla_nas.search.optuna_backend import start

    space = str(conftest.write_space(tmp_path, conftest.HAND_SPACE))
    opts = SearchOptions(space=space, trials=1, out=str(tmp_path / "run"), sampler=sampler,
                         warm_start=warm_start)
    _, study = start(opts)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == enqueued
    _, again = start(opts)  # reopened before any trial ran: nothing is added
    assert len(again.get_trials(deepcopy=False)) == enqueued


def test_an_enqueued_network_is_drawn_next_once_and_one_outside_the_space_refused(
        tmp_path, capsys):
    """--enqueue (Optuna's enqueue_trial): the user's network is drawn next, new run (before
    the hand designs) or resumed, and never queued twice; one the space cannot draw, a
    missing file, or a run at --trials already is refused in one line, nothing written."""
    from dla_nas.search import trials
    from dla_nas.search.optuna_backend import recover, start

    space = str(conftest.write_space(tmp_path, conftest.HAND_SPACE))
    mine = zoo.load("plain_cnn_8_16_32")
    (tmp_path / "mine.yaml").write_text(mine.to_yaml())
    out = tmp_path / "run"
    plain = SearchOptions(space=space, trials=1, out=str(out), warm_start="none")
    _, study = start(plain)
    assert not study.get_trials(deepcopy=False)  # a new run, nothing queued
    opts = SearchOptions(space=space, trials=1, out=str(out), warm_start="none",
                         enqueue=[str(tmp_path / "mine.yaml")])
    _, study = start(opts)  # resumed with --enqueue
    trial = study.ask()
    proposal = trials.propose(SearchSpace.from_yaml(space), trial, 8)
    assert proposal.hash == mine.canonical_hash()
    assert proposal.name == "mine" == proposal.record_fields()["name"]  # named after its file
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # interrupted: retried, still named
    recover(study, RunStore(out), SearchSpace.from_yaml(space))
    trial = study.ask()
    assert trials.propose(SearchSpace.from_yaml(space), trial, 8).name == "mine"
    assert trial.user_attrs["retry_of"] == proposal.number
    study.tell(trial, [0.5, 1000.0])
    RunStore(out).append(TrialRecord(0, "ok", mine.canonical_hash(), val_acc=0.5, macs=1000,
                                     params=10, epochs_run=1))
    with pytest.raises(OptionError, match="has 1 finished trials and --trials is 1: raise"):
        start(opts)  # reached --trials: it would stay queued, untrained
    opts.trials = 2
    _, again = start(opts)  # the same command again: already tried, not queued
    assert len(again.get_trials(deepcopy=False)) == 2  # the interrupted one and its retry

    drawn = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    other = SearchSpace.from_yaml(space).sample_trial(drawn.ask(), 8)[0]
    assert other.canonical_hash() != mine.canonical_hash()
    (tmp_path / "other.yaml").write_text(other.to_yaml())
    warm = SearchOptions(space=space, trials=1, out=str(tmp_path / "warm"),
                         enqueue=[str(tmp_path / "other.yaml"), "plain_cnn_8_16_32"])
    warm_study = start(warm)[1]  # a new run: before the hand designs, each once
    assert [SearchSpace.from_yaml(space).sample_trial(warm_study.ask(), 8)[0].canonical_hash()
            for _ in range(2)] == [other.canonical_hash(), mine.canonical_hash()]
    assert len(warm_study.get_trials(deepcopy=False)) == 2

    for spec, says in (("dla34", "--enqueue dla34: not in the space test-hand ("),
                       (str(tmp_path / "nope.yaml"), "nope.yaml: no such file")):
        new = tmp_path / f"new-{spec[-4:]}"
        capsys.readouterr()
        assert main(["search", "--space", space, "--out", str(new), "--enqueue", spec]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
        assert not (new / "run.yaml").exists()


def test_resume_keeps_the_runs_storage(tmp_path):
    from dla_nas.search.optuna_backend import start

    space, out = str(write_space(tmp_path)), str(tmp_path / "run")
    start(SearchOptions(space=space, trials=1, out=out, storage=f"sqlite:///{tmp_path}/s.db"))
    opts = SearchOptions(space=space, trials=1, out=out)
    start(opts)
    assert opts.storage == f"sqlite:///{tmp_path}/s.db"  # adopted from run.yaml
    with pytest.raises(Exception, match="keeps its study in sqlite"):
        start(SearchOptions(space=space, trials=1, out=out, storage=f"sqlite:///{tmp_path}/other.db"))


def test_a_new_run_takes_tpe_with_pareto_stopping_and_a_resume_keeps_its_own(tmp_path):
    from dla_nas.search.optuna_backend import start

    space = str(write_space(tmp_path))
    new = SearchOptions(space=space, trials=1, out=str(tmp_path / "new"))
    start(new)
    info = RunStore(tmp_path / "new").info()
    assert (info["sampler"], info["options"]["early_stopping"]) == ("tpe", "pareto")
    old = str(tmp_path / "old")  # a run begun before the defaults changed
    start(SearchOptions(space=space, trials=1, out=old, sampler="nsga2", early_stopping="none"))
    again = SearchOptions(space=space, trials=1, out=old)
    start(again)
    assert (again.sampler, again.early_stopping) == ("nsga2", "none")
    given = SearchOptions(space=space, trials=1, out=old, early_stopping="pareto")
    start(given)
    assert (given.sampler, given.early_stopping) == ("nsga2", "pareto")


def test_backend_flags_are_not_mixed(tmp_path, capsys):
    space = str(write_space(tmp_path))
    assert main(["search", "--space", space, "--address", "auto"]) == 2
    assert "--address: only for --backend ray" in capsys.readouterr().err
    assert main(["search", "--space", space, "--early-stopping", "asha"]) == 2
    assert "--early-stopping: 'asha' is Tune's, only for --backend ray" in capsys.readouterr().err
    assert main(["search", "--space", space, "--backend", "ray", "--workers", "2"]) == 2
    assert "--workers: 2 is not used with --backend ray" in capsys.readouterr().err


def test_a_ray_run_is_not_continued_by_the_optuna_backend(tmp_path, capsys):
    from dla_nas.search.core import run_info

    space_path = write_space(tmp_path)
    out = tmp_path / "run"
    space = SearchSpace.from_yaml(space_path)
    info = run_info(space, SearchOptions(space=str(space_path), trials=1, out=str(out)), {}, "ray")
    RunStore(out).create_or_check(info)
    assert main(["search", "--space", str(space_path), "--out", str(out)]) == 2
    assert "made with --backend ray" in capsys.readouterr().err


def test_a_twin_of_a_running_trial_waits_for_its_record(tmp_path):
    import threading

    from dla_nas.search.optuna_backend import _running_twins, twin_record

    study, store = _study_and_store(tmp_path)
    first = study.ask({"x": optuna.distributions.IntDistribution(0, 1)})
    for key, value in (("hash", "abc"), ("host", socket.gethostname()), ("pid", os.getpid())):
        first.set_user_attr(key, value)
    second = study.ask()
    owners = _running_twins(study, second.number, "abc")
    assert owners == {first.number} and _running_twins(study, second.number, "other") == set()
    assert twin_record(study, store, "other", set()) is None
    done = TrialRecord(trial=first.number, status="ok", hash="abc", val_acc=0.9)
    timer = threading.Timer(0.3, store.append, [done])
    timer.start()
    started = time.time()
    found = twin_record(study, store, "abc", owners, poll=0.05)
    assert found is not None and found.trial == first.number and time.time() - started >= 0.25
    timer.join()
    # a twin whose process is gone is not waited for, nor one that has ended without a record
    third = study.ask()
    for key, value in (("hash", "xyz"), ("host", socket.gethostname()), ("pid", 2**22 + 7)):
        third.set_user_attr(key, value)
    assert _running_twins(study, study.ask().number, "xyz") == set()
    study.tell(third, state=optuna.trial.TrialState.FAIL)
    assert twin_record(study, store, "xyz", {third.number}, poll=0.05) is None


@pytest.mark.parametrize("change, message", [
    ({"seed": 2**32}, r"--seed: 4294967296 is not allowed \(at most 4294967295\)"),
    ({"seed": -1}, r"--seed: -1 is not allowed"),
    ({"resolution": 100_000}, r"--resolution: 100000 is not allowed \(at most 2048\)")])
def test_a_library_search_refuses_seeds_and_sizes_out_of_range(tmp_path, change, message):
    """What the command line refuses at parse time, ``SearchOptions`` refuses for a caller of
    the library, before anything is written."""
    opts = SearchOptions(space="x.yaml", trials=1, out=str(tmp_path / "r"), **change)
    with pytest.raises(OptionError, match=message):
        opts.check()
    assert not (tmp_path / "r").exists()
