"""Memory order on the CPU: NCHW against channels_last, same networks, same recipe, over seeds.

Trains the Pareto-front networks of committed reference runs (cheapest first, ``--per-run``
of each) with their run's proxy recipe (``ProxyEvaluator``, the search's own path, without
early stopping), once per seed in each memory order, the orders in turn (NCHW, channels_last,
NCHW, ...), and prints JSON: per network and order the accuracy the run ranks by (mean, min,
max over the seeds) and the training seconds; the difference of the orders' means beside the
seeds' spread (max - min in NCHW), and the speed-up (NCHW seconds / channels_last seconds).
Each network's row also goes to stderr as it is done.

    python benchmarks/memory_format.py --run results/reference-digits-tiny \\
        --run results/reference-neu-steel [--per-run 2] [--seeds 0,1,2] [--threads 1]

A run's data path is the one in its run.yaml (the references': ``../shared/data/...``, from
the repository root).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from dla_nas.analysis.pareto import accuracy_metric, front, run_objectives
from dla_nas.arch.backbone_genome import genome_from_dict
from dla_nas.results import RunStore, load_run
from dla_nas.search.evaluator import ProxyEvaluator
from dla_nas.search.space import SearchSpace

ORDERS = {"nchw": False, "channels_last": True}


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def run_rows(run: Path, per_run: int, seeds: list[int], threads: int | None) -> list[dict]:
    info = RunStore(run).info()
    space = SearchSpace.of_run(info)
    metric = accuracy_metric(run_objectives(info))
    evaluator = ProxyEvaluator(space, device="cpu", threads=threads)
    base = evaluator.train_config
    members = sorted(front(load_run(run), run_objectives(info)), key=lambda r: r.macs)[:per_run]
    rows = []
    for member in members:
        genome = genome_from_dict(member.genome)
        got: dict[str, dict[str, list[float]]] = {o: {"acc": [], "s": []} for o in ORDERS}
        for seed in seeds:
            for order, channels_last in ORDERS.items():
                evaluator.train_config = dataclasses.replace(base, seed=seed,
                                                             channels_last=channels_last)
                record = evaluator.new_record(member.trial, hash=member.hash,
                                              genome=member.genome, recipe=member.recipe)
                record = evaluator.measure(evaluator.build(genome), record)
                got[order]["acc"].append(record.value(metric))
                got[order]["s"].append(record.train_seconds)
        row = {"run": run.name, "trial": member.trial, "macs": member.macs, "metric": metric,
               "seeds": seeds}
        for order in ORDERS:
            row[order] = {metric: spread(got[order]["acc"]),
                          "train_seconds": round(statistics.fmean(got[order]["s"]), 2)}
        row["mean_difference"] = round(row["channels_last"][metric]["mean"]
                                       - row["nchw"][metric]["mean"], 4)
        row["nchw_seed_range"] = round(row["nchw"][metric]["max"] - row["nchw"][metric]["min"], 4)
        row["speed_up"] = round(row["nchw"]["train_seconds"]
                                / row["channels_last"]["train_seconds"], 3)
        print(json.dumps(row), file=sys.stderr, flush=True)  # progress
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", type=Path, required=True,
                        help="a reference run folder (repeat for more)")
    parser.add_argument("--per-run", type=int, default=2, help="front networks per run")
    parser.add_argument("--seeds", default="0,1,2", help="proxy seeds (default 0,1,2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch's)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [row for run in args.run for row in run_rows(run, args.per_run, seeds, args.threads)]
    print(json.dumps({"benchmark": "memory_format", "threads": args.threads, "rows": rows},
                     indent=2))


if __name__ == "__main__":
    main()
