"""What ASHA early stopping saves on the Ray backend: the same search with ``--early-stopping asha``
and ``--early-stopping none``; prints JSON (wall time of each, trials stopped early, epochs
trained, best and mean validation accuracy, time saved).

    python benchmarks/asha_savings.py [--space search_spaces/digits-tiny.yaml] [--trials 12]
                                      [--seed 0] [--cpus-per-trial 1] [--num-cpus N]

Both runs use one local Ray (started here, so Ray's start-up is not in the timings) and the
same sampler seed. The sampler sees the accuracies each scheduler reports (a stopped trial
reports its accuracy at the rung), so after the first generation the two searches may sample
different genomes: compare the accuracies as "what each search found", not trial by trial.
Per-trial progress goes to stderr; the JSON to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summary(out: Path, wall: float) -> dict:
    from dla_nas.results import load_run

    records = [r for r in load_run(out) if r.kind == "search"]
    trained = [r for r in records if r.status == "ok"]
    accs = [r.val_acc for r in records if r.feasible_and_trained]
    return {
        "wall_s": round(wall, 1),
        "trials": len(records),
        "by_status": {s: sum(r.status == s for r in records)
                      for s in ("ok", "reused", "infeasible", "diverged", "failed")},
        "stopped_early": sum(r.stopped_rung is not None for r in trained),
        "epochs_trained": sum(r.epochs_run for r in trained),
        "train_s": round(sum(r.train_seconds for r in trained), 1),
        "best_val_acc": round(max(accs), 4) if accs else None,
        "mean_val_acc": round(statistics.fmean(accs), 4) if accs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "digits-tiny.yaml"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the local Ray (default: all of this machine's)")
    args = parser.parse_args()

    import ray

    from dla_nas.search.core import SearchOptions
    from dla_nas.search.ray_backend import run_ray_search

    cores = args.num_cpus or len(os.sched_getaffinity(0))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=cores, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False, logging_level=logging.ERROR)
    runs = {}
    try:
        with tempfile.TemporaryDirectory(prefix="asha-savings-") as tmp:
            for scheduler in ("asha", "none"):
                out = Path(tmp, scheduler)
                opts = SearchOptions(space=args.space, trials=args.trials, out=str(out),
                                     seed=args.seed, early_stopping=scheduler)
                start = time.perf_counter()
                with contextlib.redirect_stdout(sys.stderr):
                    run_ray_search(opts, cpus_per_trial=args.cpus_per_trial)
                runs[scheduler] = summary(out, time.perf_counter() - start)
    finally:
        ray.shutdown()

    asha, none = runs["asha"], runs["none"]
    print(json.dumps({
        "benchmark": "asha_savings",
        "space": Path(args.space).name,
        "trials": args.trials,
        "seed": args.seed,
        "ray_cpus": cores,
        "cpus_per_trial": args.cpus_per_trial,
        "asha": asha,
        "none": none,
        "time_saved_s": round(none["wall_s"] - asha["wall_s"], 1),
        "time_saved_fraction": (round(1 - asha["wall_s"] / none["wall_s"], 3)
                                if none["wall_s"] else None),
        "epochs_saved": none["epochs_trained"] - asha["epochs_trained"],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
    }, indent=2))


if __name__ == "__main__":
    main()
