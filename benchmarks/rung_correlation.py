"""When does a trial's accuracy at an early epoch rank trials as their final accuracy does?
Prints JSON.

For each run folder, over its search trials trained to the full proxy budget, the Kendall tau
and Spearman rho between the validation accuracy after epoch e and the final validation
accuracy, for every epoch e. An early-stopping rung placed where tau is low ranks noise; the
first epoch where tau reaches ``--threshold`` is reported as the earliest sensible rung.

    python benchmarks/rung_correlation.py results/reference-digits-aggregation \
        results/reference-neu-steel-aggregation
"""

from __future__ import annotations

import argparse
import json

from scipy.stats import kendalltau, spearmanr

from dla_nas.results import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--threshold", type=float, default=0.5, help="tau of a sensible rung")
    args = ap.parse_args()
    out = {"benchmark": "rung_correlation", "threshold": args.threshold, "runs": []}
    for run in args.runs:
        rows = [r for r in load_run(run)
                if r.kind == "search" and r.status == "ok" and r.stopped_rung is None
                and r.val_acc_per_epoch]
        epochs = min(len(r.val_acc_per_epoch) for r in rows)
        final = [r.val_acc_per_epoch[-1] for r in rows]
        per_epoch = []
        for e in range(epochs):
            at = [r.val_acc_per_epoch[e] for r in rows]
            per_epoch.append({"epoch": e + 1, "kendall_tau": round(kendalltau(at, final).statistic, 3),
                              "spearman_rho": round(spearmanr(at, final).statistic, 3)})
        first = next((p["epoch"] for p in per_epoch if p["kendall_tau"] >= args.threshold), None)
        out["runs"].append({"run": run, "trials": len(rows), "epochs": epochs,
                            "first_epoch_at_threshold": first, "per_epoch": per_epoch})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
