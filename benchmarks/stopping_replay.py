"""What Pareto early stopping would save and lose, replayed on finished full-fidelity runs.
Prints JSON.

For each run folder and each (first rung, eta), the run's trained search trials reach the rungs
(``early_stopping.Rungs``) in time order: a trial reaches epoch e at its start plus e/epochs of
its training time. At each rung it is judged by ``keep_going`` against the entries recorded
there before it, as in a search. Reported: the share of trials stopped, the share of training
time saved, and the hypervolume lost, that of the run's full-fidelity front less that of the
trials that would have continued, in per cent (reference point: the run's own). The time saved
would buy more trials in a real search; this replay does not simulate them, so it measures the
price of a setting and what it frees, not the front a search would reach.

    python benchmarks/stopping_replay.py results/reference-digits-aggregation \
        results/reference-neu-steel-aggregation --first-rung 0.5 --eta 2,3,4
"""

from __future__ import annotations

import argparse
import json

from dla_nas.analysis.pareto import hypervolume, objective_vector, reference_point, run_objectives
from dla_nas.results import RunStore, TrialRecord, load_run
from dla_nas.search.early_stopping import RungEntry, Rungs, keep_going, rung_entry


def front_volume(records: list[TrialRecord], objectives, reference) -> float:
    points = [objective_vector(r, objectives) for r in records]
    return hypervolume(points, [d for _, d in objectives], reference)


def replay(records: list[TrialRecord], rungs: Rungs, objectives) -> tuple[set[int], float]:
    """(trials stopped, training seconds saved) if ``rungs`` had judged ``records``."""
    directions = [d for _, d in objectives]
    events = sorted((r.started_at + r.train_seconds * e / rungs.budget, e, i)
                    for i, r in enumerate(records) for e in rungs.epochs)
    entries: list[RungEntry] = []
    stopped, saved = set(), 0.0
    for _, epoch, i in events:
        if i in stopped:
            continue
        r = records[i]
        metrics = {"val_acc": r.val_acc_per_epoch[epoch - 1], "macs": r.macs,
                   "params": r.params, "latency_ms": r.latency_ms}
        metrics.update({m: r.value(m) for m, _ in objectives if m not in metrics})
        entry = rung_entry(r.trial, epoch, metrics, objectives)
        if not keep_going(entry, entries, directions, rungs.eta):
            stopped.add(i)
            saved += r.train_seconds * (rungs.budget - epoch) / rungs.budget
        entries.append(entry)
    return stopped, saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--first-rung", default="0.5", help="fractions of the proxy's epochs")
    ap.add_argument("--eta", default="2,3,4")
    args = ap.parse_args()
    fractions = [float(f) for f in args.first_rung.split(",")]
    etas = [int(e) for e in args.eta.split(",")]
    out = {"benchmark": "stopping_replay", "runs": []}
    for run in args.runs:
        objectives = run_objectives(RunStore(run).info())
        trained = [r for r in load_run(run)  # a reused genome trains nothing, as in a search
                   if r.kind == "search" and r.status == "ok" and r.feasible_and_trained]
        epochs = max(len(r.val_acc_per_epoch) for r in trained)
        records = [r for r in trained if len(r.val_acc_per_epoch) == epochs]
        reference = reference_point(records, objectives)
        full = front_volume(records, objectives, reference)
        total = sum(r.train_seconds for r in records)
        rows = []
        for fraction in fractions:
            for eta in etas:
                rungs = Rungs.for_budget(epochs, eta, fraction)
                stopped, saved = replay(records, rungs, objectives)
                kept = [r for i, r in enumerate(records) if i not in stopped]
                lost = full - front_volume(kept, objectives, reference)
                rows.append({"rungs": list(rungs.epochs), "eta": eta,
                             "stopped": round(len(stopped) / len(records), 3),
                             "time_saved": round(saved / total, 3),
                             "hypervolume_lost_pct": round(100 * lost / full, 3)})
        out["runs"].append({"run": run, "trials": len(records), "epochs": epochs,
                            "settings": rows})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
