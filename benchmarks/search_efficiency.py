"""Which search finds the best front for the time: hypervolume against wall-clock seconds.
Prints JSON and writes a plot.

Each method searches the same space for the same wall-clock budget (``--timeout``: no trial
starts after it) with each seed; the hypervolume is that of the front of the full-fidelity
trials finished so far (early-stopped ones never count), accuracy against log10 MACs, with one
reference point over every run of the benchmark (``pareto.reference_point``).

    python benchmarks/search_efficiency.py --space search_spaces/digits-tiny.yaml \
        --budget 180 --seeds 0,1,2 --out results/bench-efficiency-digits

Methods (``--methods``): random, nsga2, tpe (Optuna backend, full fidelity: the flags say
``--early-stopping none``, as a new run stops early by default), nsga2-pareto and
tpe-pareto (Optuna, ``--early-stopping pareto``), ray-asha and ray-pareto (Ray backend with that
scheduler, NSGA-II), ray-tpe-pareto (Ray, TPE): all these start cold (``--warm-start none``,
as a new TPE run starts from the space's hand designs by default). nsga2-warm, tpe-warm,
tpe-pareto-warm (the Optuna default) and ray-tpe-pareto-warm start from them. Optuna runs
``--workers`` processes; Ray runs one trial per CPU. Runs that exist under ``--out`` are read
again, not rerun, so an interrupted benchmark continues.
Per-run progress goes to stderr; the JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLD = ["--warm-start", "none"]
METHODS = {
    "random": ["--sampler", "random", "--early-stopping", "none", *COLD],
    "nsga2": ["--sampler", "nsga2", "--early-stopping", "none", *COLD],
    "tpe": ["--sampler", "tpe", "--early-stopping", "none", *COLD],
    "nsga2-pareto": ["--sampler", "nsga2", "--early-stopping", "pareto", *COLD],
    "tpe-pareto": ["--sampler", "tpe", "--early-stopping", "pareto", *COLD],
    "nsga2-warm": ["--sampler", "nsga2", "--early-stopping", "none", "--warm-start", "baselines"],
    "tpe-warm": ["--sampler", "tpe", "--early-stopping", "none", "--warm-start", "baselines"],
    "tpe-pareto-warm": ["--sampler", "tpe", "--early-stopping", "pareto",
                        "--warm-start", "baselines"],
    "ray-asha": ["--sampler", "nsga2", "--backend", "ray", "--early-stopping", "asha", *COLD],
    "ray-pareto": ["--sampler", "nsga2", "--backend", "ray", "--early-stopping", "pareto", *COLD],
    "ray-tpe-pareto": ["--sampler", "tpe", "--backend", "ray", "--early-stopping", "pareto", *COLD],
    "ray-tpe-pareto-warm": ["--sampler", "tpe", "--backend", "ray", "--early-stopping", "pareto",
                            "--warm-start", "baselines"],
}


def run_search(method: str, seed: int, args: argparse.Namespace, out: Path) -> float:
    """Run one search unless its folder holds a finished one; its start time (Unix)."""
    done = out / "started_at"
    if done.exists() and (out / "trials.jsonl").exists():
        return float(done.read_text())
    workers = [] if method.startswith("ray") else ["--workers", str(args.workers)]
    cmd = [sys.executable, "-m", "dla_nas.cli", "search", "--space", args.space,
           "--trials", "10000", "--timeout", str(args.budget), "--seed", str(seed),
           "--out", str(out), *METHODS[method], *workers, *args.extra]
    print(f"{method} seed {seed}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    done.write_text(str(start))
    return start


def curve(records, start: float, objectives, reference) -> list[tuple[float, float]]:
    """(seconds since the start, hypervolume) after each finished search trial."""
    from dla_nas.analysis.pareto import hypervolume_history

    search = sorted((r for r in records if r.kind == "search"), key=lambda r: r.finished_at)
    history = hypervolume_history(search, objectives, reference)
    return [(r.finished_at - start, volume) for r, (_, volume) in zip(search, history)]


def at(points: list[tuple[float, float]], t: float) -> float:
    """The hypervolume reached by ``t`` seconds."""
    return max([v for s, v in points if s <= t], default=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="search_spaces/digits-tiny.yaml")
    ap.add_argument("--budget", type=float, default=180.0, help="seconds per search")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default="results/bench-search-efficiency")
    ap.add_argument("extra", nargs="*", help="more search flags after --, e.g. -- --dataset "
                                             "folder:PATH --resolution 64")
    args = ap.parse_args()
    from dla_nas.analysis.pareto import reference_point, run_objectives
    from dla_nas.results import RunStore, load_run

    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"--methods: {unknown} not allowed (choose from {', '.join(METHODS)})")
    runs = {}
    for seed in seeds:  # seed-major, so that a cut-short benchmark still compares methods
        for method in methods:
            out = Path(args.out) / f"{method}-seed{seed}"
            runs[method, seed] = (out, run_search(method, seed, args, out))
    loaded = {k: load_run(out) for k, (out, _) in runs.items()}
    objectives = run_objectives(RunStore(next(iter(runs.values()))[0]).info())
    reference = reference_point([r for rs in loaded.values() for r in rs], objectives)
    grid = [args.budget * k / 10 for k in range(1, 13)]  # past the budget: the last trials
    result = {"benchmark": "search_efficiency", "space": args.space, "budget_s": args.budget,
              "seeds": seeds, "workers": args.workers, "extra": args.extra,
              "reference": reference, "grid_s": grid, "methods": {}}
    curves = {}
    for method in methods:
        per_seed = []
        for seed in seeds:
            out, start = runs[method, seed]
            points = curve(loaded[method, seed], start, objectives, reference)
            curves[method, seed] = points
            search = [r for r in loaded[method, seed] if r.kind == "search"]
            per_seed.append({
                "seed": seed, "trials": len(search),
                "trained": sum(r.status == "ok" for r in search),
                "stopped_early": sum(r.stopped_rung is not None and r.status == "ok"
                                     for r in search),
                "wall_s": round(max((s for s, _ in points), default=0.0), 1),
                "hypervolume": [round(at(points, t), 5) for t in grid]})
        final = [s["hypervolume"][-1] for s in per_seed]
        result["methods"][method] = {
            "runs": per_seed, "final_mean": round(statistics.fmean(final), 5),
            "mean_at_grid": [round(statistics.fmean(s["hypervolume"][i] for s in per_seed), 5)
                             for i in range(len(grid))]}
    if "nsga2" in methods:  # the yardstick: time to reach full-fidelity NSGA-II's end
        for method in methods:
            times = []
            for seed in seeds:
                target = at(curves["nsga2", seed], float("inf"))
                reached = [s for s, v in curves[method, seed] if v >= target]
                times.append(min(reached) if reached else None)
            result["methods"][method]["seconds_to_nsga2_final"] = times
    plot(curves, methods, seeds, Path(args.out) / "search_efficiency.png")
    print(json.dumps(result, indent=1))


def plot(curves, methods, seeds, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, method in enumerate(methods):
        colour = f"C{i}"
        for j, seed in enumerate(seeds):
            points = curves[method, seed]
            xs = [0.0] + [s for s, _ in points]
            ys = [0.0] + [max(v for _, v in points[:k + 1]) for k in range(len(points))]
            ax.step(xs, ys, where="post", color=colour, alpha=0.8, lw=1.2,
                    label=method if j == 0 else None)
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("hypervolume (accuracy x log10 MACs)")
    ax.set_title("Hypervolume of the full-fidelity front against time, one line per seed",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
