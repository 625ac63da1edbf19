"""Search overhead per trial against its training time, on the digits space; prints JSON.

A trial's overhead is everything it does besides training: asking the study, sampling the
genome, building the model, counting its cost, the duplicate lookup, appending the record and
telling the study (journal storage, as in a real run). It is measured around the real trial
code (``optuna_backend.run_trial``) with the proxy's ``train`` call timed apart. Training includes
its per-epoch validation.

    python benchmarks/search_overhead.py [--space search_spaces/digits-tiny.yaml] [--trials 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import dla_nas.search.evaluator as proxy
from dla_nas.results import RunStore
from dla_nas.search.core import SearchOptions
from dla_nas.search.optuna_backend import recover, run_trial
from dla_nas.search.space import SearchSpace
from dla_nas.search.trials import open_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--space", default="search_spaces/digits-tiny.yaml")
    parser.add_argument("--trials", type=int, default=6, help="trained trials to time")
    args = parser.parse_args()
    space = SearchSpace.from_yaml(args.space)
    evaluator = proxy.ProxyEvaluator(space, device="cpu")
    train_times: list[float] = []
    real_train = proxy.train

    def timed_train(*a, **kw):
        t0 = time.perf_counter()
        result = real_train(*a, **kw)
        train_times.append(time.perf_counter() - t0)
        return result

    proxy.train = timed_train
    rows, skipped = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        study = open_study(store, space, SearchOptions(space=args.space, trials=args.trials, out=tmp))
        while len(rows) < args.trials:
            trained_before = len(train_times)
            t0 = time.perf_counter()
            with store.lock():  # as a worker starts a trial
                recover(study, store, space)
                trial = study.ask()
            run_trial(study, trial, space, evaluator, store)
            total = time.perf_counter() - t0
            if len(train_times) == trained_before:  # infeasible or duplicate: nothing trained
                skipped += 1
                continue
            train_s = train_times[-1]
            rows.append({"trial": trial.number, "macs": store.records()[-1].macs,
                         "train_s": round(train_s, 3), "overhead_s": round(total - train_s, 4),
                         "overhead_fraction": round((total - train_s) / train_s, 4)})
    over = sum(r["overhead_s"] for r in rows)
    trained = sum(r["train_s"] for r in rows)
    print(json.dumps({"benchmark": "search_overhead", "space": space.name,
                      "proxy_epochs": space.proxy.epochs, "trials": rows,
                      "untrained_trials_skipped": skipped,
                      "mean_overhead_fraction": round(over / trained, 4)}, indent=2))


if __name__ == "__main__":
    main()
