"""Pareto-aware successive halving: rung placement, the keep-or-stop rule, the shared rung file
and a search that uses it."""

import math

import conftest
import pytest
from test_search import SPACE  # digits at 8 px, tiny genomes, 2 proxy epochs

from dla_nas.analysis.pareto import front
from dla_nas.cli import main
from dla_nas.dominance import crowding_distance
from dla_nas.errors import OptionError
from dla_nas.results import RunStore, TrialRecord, load_run
from dla_nas.search.core import SearchOptions, open_run
from dla_nas.search.early_stopping import ParetoStopping, RungEntry, Rungs, keep_going
from dla_nas.train.metrics import Metrics
from dla_nas.train.trainer import EpochReport

MAX_MIN = ["maximize", "minimize"]  # (accuracy at the rung, log10 MACs)
MAX_MIN_OBJECTIVES = (("val_acc", "maximize"), ("macs", "minimize"))


def entry(trial, acc, log_macs, epoch=5):
    return RungEntry(trial, epoch, (acc, log_macs))


def test_rungs_start_at_half_the_budget():
    assert Rungs.for_budget(15).epochs == (8,)
    assert Rungs.for_budget(13).epochs == (7,)
    assert Rungs.for_budget(8).epochs == (4,)
    assert Rungs.for_budget(40).epochs == (20,)
    assert Rungs.for_budget(2).epochs == (1,)
    assert Rungs(15, 5, eta=2).epochs == (5, 10)
    assert Rungs(15, 5).epochs == (5,)  # eta 3 by default, as for_budget
    assert Rungs(16, 2, eta=3).epochs == (2, 6)
    with pytest.raises(OptionError, match="eta: 1 is not allowed"):
        Rungs(10, 2, eta=1)


def test_crowding_distance_keeps_the_ends_and_measures_the_middle():
    d = crowding_distance([(0.9, 6.0), (0.8, 5.5), (0.7, 5.0)])
    assert d[0] == d[2] == math.inf and d[1] == pytest.approx(2.0)


def test_the_first_trial_at_a_rung_continues():
    assert keep_going(entry(0, 0.1, 7.0), [], MAX_MIN, eta=2)


def test_the_cheapest_front_member_is_never_stopped_for_its_accuracy():
    # four trials more accurate than it, all dearer: by accuracy alone it is last of five
    earlier = [entry(1, 0.90, 7.0), entry(2, 0.85, 6.9), entry(3, 0.88, 7.2), entry(4, 0.80, 6.8)]
    cheapest = entry(5, 0.40, 5.0)
    assert keep_going(cheapest, earlier, MAX_MIN, eta=2)
    assert keep_going(cheapest, earlier, MAX_MIN, eta=4)


def test_a_dominated_trial_below_the_quota_is_stopped():
    earlier = [entry(1, 0.90, 6.0), entry(2, 0.85, 5.5), entry(3, 0.80, 5.0)]
    assert not keep_going(entry(4, 0.70, 6.5), earlier, MAX_MIN, eta=2)  # beaten on both
    # among two dominated ones, the quota (top half of 5 = 3, after the front of 3) is full
    assert not keep_going(entry(5, 0.75, 5.8), [*earlier, entry(4, 0.70, 6.5)], MAX_MIN, eta=2)
    # with a larger pool the quota reaches the second front
    pool = [*earlier, entry(4, 0.70, 6.5), entry(6, 0.1, 7.5), entry(7, 0.2, 7.4)]
    assert keep_going(entry(5, 0.75, 5.8), pool, MAX_MIN, eta=2)


def test_entries_of_the_same_trial_or_another_rung_do_not_count():
    earlier = [entry(1, 0.9, 5.0, epoch=10), entry(4, 0.9, 5.0)]  # trial 4's earlier try
    assert keep_going(entry(4, 0.5, 6.0), earlier, MAX_MIN, eta=2)


def _report(epoch, acc):
    val = Metrics(acc=acc, loss=1.0, balanced_acc=acc, macro_f1=acc, per_class_recall=[acc],
                  confusion=[[1]], n=1)
    return EpochReport(epoch, 1.0, acc, 1.0, 1.0, 1.0, val=val)


def test_pareto_stopping_shares_its_rungs_through_the_run_folder(tmp_path):
    store = RunStore(tmp_path / "run")
    stop = ParetoStopping(store, Rungs(6, 2, eta=2), MAX_MIN_OBJECTIVES)  # rungs at 2 and 4
    def rec(trial, macs):
        return TrialRecord(trial=trial, status="ok", hash=f"h{trial}", macs=macs, params=1)

    assert not stop(rec(0, macs=10_000), _report(1, 0.5))  # not a rung: nothing recorded
    assert not store.rungs_file.exists()
    assert not stop(rec(0, macs=10_000), _report(2, 0.9))
    assert not stop(rec(1, macs=1_000), _report(2, 0.2))  # cheaper: on the front
    assert stop(rec(2, macs=20_000), _report(2, 0.1))  # dominated by trial 0
    lines = [RungEntry.from_dict(d) for d in RunStore(store.path).enter_rung(
        {"trial": 9, "epoch": 2, "values": [0.0, 9.0]})]
    assert [e.trial for e in lines] == [0, 1, 2]
    assert lines[0].values == (0.9, 4.0)  # MACs as log10, as the hypervolume measures them


def test_a_search_with_pareto_early_stopping_stops_at_its_rung(tmp_path):
    space = conftest.write_space(tmp_path, SPACE)  # 2 epochs: one rung, after epoch 1
    out = tmp_path / "run"
    opts = SearchOptions(space=str(space), trials=6, out=str(out), sampler="random",
                         early_stopping="pareto")
    store = open_run(opts, "optuna").store  # the run's folder, before its first trial
    for i in range(5):  # five stronger trials already at the rung: each real one falls below
        store.enter_rung({"trial": 1000 + i, "epoch": 1, "values": [1.0, 1.0 + i / 10]})
    assert main(["search", "--space", str(space), "--trials", "6", "--out", str(out),
                 "--sampler", "random", "--early-stopping", "pareto"]) == 0
    records = {r.trial: r for r in load_run(out) if r.kind == "search"}
    entries = [RungEntry.from_dict(d) for d in store.enter_rung(
        {"trial": -1, "epoch": 1, "values": [0.0, 0.0]})]
    trained = [r for r in records.values() if r.status == "ok"]
    assert trained and {e.trial for e in entries[5:]} == {r.trial for r in trained}
    for i, e in enumerate(entries[5:], 5):  # every decision is the rule's, replayed in order
        assert not keep_going(e, entries[:i], MAX_MIN, eta=2)
        assert records[e.trial].stopped_rung == 1 and records[e.trial].epochs_run == 1
    assert not front(list(records.values()), MAX_MIN_OBJECTIVES)  # stopped: never on a front
    assert main(["status", str(out)]) == 0


def test_the_ray_scheduler_takes_the_same_decisions_from_the_same_file(tmp_path):
    pytest.importorskip("ray")
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from dla_nas.search.ray_scheduler import ParetoScheduler

    store = RunStore(tmp_path / "run")
    sched = ParetoScheduler(ParetoStopping(store, Rungs(6, 2, eta=2), MAX_MIN_OBJECTIVES))

    def result(number, epoch, acc, macs, status="ok"):
        trial = SimpleNamespace(config={"dla": {"number": number}})
        return sched.on_trial_result(None, trial, {"epoch": epoch, "status": status,
                                                   "val_acc": acc, "macs": macs})

    assert result(0, 1, 0.5, 10_000) == TrialScheduler.CONTINUE  # not a rung
    assert result(0, 2, 0.9, 10_000) == TrialScheduler.CONTINUE
    assert result(1, 2, 0.2, 1_000) == TrialScheduler.CONTINUE  # cheaper: on the front
    assert result(2, 2, 0.1, 20_000) == TrialScheduler.STOP  # dominated by trial 0
    assert [d["trial"] for d in store.enter_rung({"trial": 9, "epoch": 2})] == [0, 1, 2]
