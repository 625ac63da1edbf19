"""The learning curve: test accuracy against labelled images a class, per route, over seeds,
from the JSON lines of ``benchmarks/transfer.py`` runs (one run per N). Prints JSON (mean,
lowest and highest seed per route and N) and draws the curves with each seed's spread.

    python benchmarks/transfer.py --dataset folder:PATH --labels 5 > n5.jsonl   # and 10, 30
    python benchmarks/learning_curve.py curve.png n5.jsonl n10.jsonl n30.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from dla_nas.files import atomic_path


def read_runs(paths: list[Path]) -> dict[str, dict[int, list[float]]]:
    """route -> labels a class -> the seeds' test accuracies (summary lines skipped)."""
    runs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "route" in row:
                runs[row["route"]][row["labels"]].append(row["test_acc"])
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("plot", type=Path, help="the figure to write (.png or .svg)")
    ap.add_argument("runs", type=Path, nargs="+", help="transfer.py outputs (JSON lines)")
    args = ap.parse_args()
    runs = read_runs(args.runs)
    summary = {route: {n: {"mean": round(statistics.mean(accs), 4), "low": min(accs),
                           "high": max(accs), "seeds": len(accs)}
                       for n, accs in sorted(by_n.items())}
               for route, by_n in runs.items()}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for route, by_n in summary.items():
        ns = list(by_n)
        line, = ax.plot(ns, [by_n[n]["mean"] for n in ns], marker="o", label=route)
        ax.fill_between(ns, [by_n[n]["low"] for n in ns], [by_n[n]["high"] for n in ns],
                        color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(sorted({n for by_n in summary.values() for n in by_n}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labelled images a class (log scale)")
    ax.set_ylabel("test accuracy (band: the seeds' range)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(args.plot) as part:  # never a half-written figure
        fig.savefig(part, format=args.plot.suffix.lstrip(".") or "png", dpi=120)
    print(json.dumps({"benchmark": "learning_curve", "plot": str(args.plot),
                      "summary": summary}))


if __name__ == "__main__":
    main()
