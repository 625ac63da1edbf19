"""The search benchmarks measure what they say: full-fidelity methods train every trial, and the
early-stopping replay judges trials as a search would."""

import importlib.util
from pathlib import Path

import pytest

from dla_nas import Genome
from dla_nas.cli.parser import build_parser
from dla_nas.results import TrialRecord
from dla_nas.search.early_stopping import Rungs

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
OBJECTIVES = (("val_acc", "maximize"), ("macs", "minimize"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["random", "nsga2", "tpe", "nsga2-warm", "tpe-warm"])
def test_full_fidelity_methods_ask_for_no_early_stopping(method):
    """A new Optuna run stops early by default, so the benchmark's full-fidelity yardstick
    must say ``--early-stopping none`` (it once measured NSGA-II + pareto as NSGA-II)."""
    flags = load("search_efficiency").METHODS[method]
    args = build_parser().parse_args(["search", "--space", "x.yaml", *flags])
    assert args.early_stopping == "none"


def test_only_the_warm_methods_start_from_the_hand_designs():
    """A new TPE run starts from the space's baselines by default, so each method says which
    start it measures."""
    methods = load("search_efficiency").METHODS
    for method, flags in methods.items():
        args = build_parser().parse_args(["search", "--space", "x.yaml", *flags])
        assert args.warm_start == ("baselines" if method.endswith("warm") else "none"), method


def record(trial: int, final: float, at_rung: float, macs: int, start: float) -> TrialRecord:
    curve = [at_rung / 2, at_rung, (at_rung + final) / 2, final]
    return TrialRecord(trial, "ok", f"h{trial}", val_acc=final, macs=macs,
                       val_acc_per_epoch=curve, epochs_run=4, train_seconds=40.0,
                       started_at=start)


def test_replay_stops_a_beaten_trial_and_counts_the_training_it_saves():
    replay = load("stopping_replay").replay
    records = [record(0, 0.90, 0.80, 1_000_000, 0.0), record(1, 0.95, 0.85, 100_000, 1.0),
               record(2, 0.97, 0.90, 50_000, 2.0),
               record(3, 0.60, 0.50, 2_000_000, 3.0)]  # beaten on both objectives at the rung
    stopped, saved = replay(records, Rungs(4, 2, eta=3), OBJECTIVES)
    # 3 is beaten at its arrival; 0 is beaten later, but a decision is final, as in a search
    assert stopped == {3}
    assert saved == pytest.approx(40.0 * 2 / 4)  # the half of its training after the rung
    # the order of arrival matters: alone at its rung, 3 continues
    first = [record(3, 0.60, 0.50, 2_000_000, 0.0), *records[1:3]]
    assert replay(first, Rungs(4, 2, eta=3), OBJECTIVES) == (set(), 0.0)


def test_the_learning_curve_reads_transfer_runs_and_draws_them(tmp_path, capsys, monkeypatch):
    import json

    rows = {5: [0.7, 0.8, 0.75], 10: [0.9, 0.85, 0.8]}
    paths = []
    for n, accs in rows.items():
        path = tmp_path / f"n{n}.jsonl"
        lines = [{"labels": n, "route": "lite0-imagenet", "seed": s, "test_acc": a}
                 for s, a in enumerate(accs)]
        lines.append({"benchmark": "transfer", "labels": n, "summary": {}})
        path.write_text("\n".join(map(json.dumps, lines)) + "\n")
        paths.append(str(path))
    monkeypatch.setattr("sys.argv", ["learning_curve.py", str(tmp_path / "c.png"), *paths])
    load("learning_curve").main()
    summary = json.loads(capsys.readouterr().out)["summary"]["lite0-imagenet"]
    assert summary["5"] == {"mean": 0.75, "low": 0.7, "high": 0.8, "seeds": 3}
    assert summary["10"]["mean"] == 0.85 and summary["10"]["low"] == 0.8
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_search_wall_times_the_code_of_each_tree_it_names(tmp_path, monkeypatch):
    """A tree's search imports that tree's dla_nas, even run from a checkout whose own package
    would shadow it; a tree without the package is refused, not timed with another's code."""
    import shutil

    wall = load("search_wall")
    tree = tmp_path / "tree"
    shutil.copytree(BENCHMARKS.parent / "dla_nas", tree / "dla_nas",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(BENCHMARKS.parent)  # where `python -m` would import the checkout's
    assert wall.code_of(tree.resolve())["PYTHONPATH"] == str(tree.resolve())
    with pytest.raises(SystemExit, match="imported from"):
        wall.code_of((tmp_path / "empty").resolve())


def test_a_step_profile_puts_a_networks_time_in_its_kinds_of_op():
    """The kinds of op partition the step (shares sum to one), and a convolutional network's
    step spends time in convolution and batch norm, which the grouping must find by name."""
    bench = load("train_throughput")
    genome = Genome.from_dict({"block": "basic", "stem": {"levels": [{"channels": 8}]},
                               "stages": [{"channels": 8, "stride": 1, "level_root": False},
                                          {"channels": 16}]})
    found = bench.step_profile(genome, batch=4, res=8, chans=1, classes=3, steps=1)
    shares = found["share"]
    assert set(shares) == {*bench.OP_KINDS, "other"} and found["step_ms"] > 0
    assert sum(shares.values()) == pytest.approx(1, abs=0.01)
    assert shares["convolution"] > 0 and shares["batch_norm"] > 0 and shares["optimiser"] > 0


def test_two_copies_train_side_by_side_in_processes_and_in_threads(monkeypatch):
    """Both ways of training two networks at once run and report a rate (the processes are
    spawned: they import the benchmark from the path, as a run of the script does)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import train_throughput

    genome = Genome.from_dict({"block": "basic", "stem": {"levels": [{"channels": 8}]},
                               "stages": [{"channels": 8, "stride": 1, "level_root": False}]})
    rates = train_throughput.side_by_side(genome, chans=1, res=8, classes=3, batch=4, steps=2)
    assert set(rates) == {"processes", "threads"} and min(rates.values()) > 0
