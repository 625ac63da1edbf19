"""``status``, ``pareto`` and ``export``: reading a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DlaNasError, OptionError
from ..files import check_out_folder
from .render import figure, print_confirmed, print_summary


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..analysis.pareto import accuracy_metric, run_objectives
    from ..results import RunStore, load_run

    store = RunStore(args.run)
    info = store.info()
    records = load_run(args.run)
    objectives = run_objectives(info)
    console = Console(width=max(Console().width, 120))
    space = info.get("space", {})
    console.print(f"[bold]{store.path}[/]: space {space.get('name', '?')}, backend "
                  f"{info.get('backend', '?')}, created {info.get('created', '?')}")
    table = Table()
    metric = accuracy_metric(objectives)  # the accuracy the run ranks by
    for col in ("trial", "kind", "status", "hash", metric, "MACs", "params", "epochs",
                "seconds", "note"):
        table.add_column(col, justify="left" if col in ("kind", "status", "hash", "note") else "right")
    for r in sorted(records, key=lambda r: r.trial):
        note = r.reason or (f"reuses trial {r.reused_from}" if r.reused_from is not None else "")
        if r.repairs:
            note = (note + "; " if note else "") + f"{len(r.repairs)} repair(s)"
        if r.name and r.kind == "search":  # a hand design the search drew, or one enqueued
            note = r.name + ("; " + note if note else "")
        table.add_row(str(r.trial), r.name if r.kind == "baseline" else r.kind, r.status, r.hash,
                      figure(r.value(metric)),
                      "-" if r.macs is None else f"{r.macs:,}",
                      "-" if r.params is None else f"{r.params:,}", str(r.epochs_run),
                      f"{r.wall_seconds:.1f}", note)
    console.print(table)
    print_summary(console, store, objectives)
    live: list[str] = []
    if not (info.get("options") or {}).get("storage"):  # a study elsewhere is not read here
        from ..search.space import SearchSpace
        from ..search.trials import running

        try:  # the study is named as the space (its file's stem when it has no name)
            live, left = running(store, SearchSpace.of_run(info).name)
        except DlaNasError as exc:  # the run's table above stands without it
            console.print(f"[yellow]warning[/]: {exc}")
            left = 0
        if live:
            console.print(f"in training now: {len(live)} trial(s), by "
                          + ", ".join(sorted(set(live))))
        if left:
            console.print(f"{left} trial(s) left unfinished by a search that stopped: drawn "
                          "again when the same search command continues the run")
    saved = sum(1 for _ in store.states.glob("*.state.pt"))  # the Optuna backend's
    if saved and not live:  # while trials train, their states are work in progress
        console.print(f"{saved} trial(s) stopped in training kept their last epoch in "
                      f"{store.states}: the same search command goes on from there")
    from ..analysis.confirm import load_confirmed

    confirmed = load_confirmed(args.run)
    if confirmed:
        print_confirmed(console, confirmed, metric)
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..analysis.plots import plot_pareto

    out = check_out_folder(args.out) if args.out else check_out_folder(args.runs[0], "RUN")
    summary = plot_pareto([Path(r) for r in args.runs], x=args.x, y=args.y, out=out,
                          by=args.by)
    console = Console(width=max(Console().width, 100))
    for run in summary["runs"]:
        table = Table(title=f"{run['run']}: Pareto front of {summary['y']} against {args.x} "
                            f"({run['eligible_trials']} eligible of {run['finished_search_trials']} "
                            f"finished; hypervolume {run['hypervolume']:.4g})")
        for col in ("trial", "hash", summary["y"], "MACs", "params", ""):
            table.add_column(col, justify="right")
        for r in run["front"]:
            table.add_row(str(r["trial"]), r["hash"], f"{r[summary['y']]:.4f}", f"{r['macs']:,}",
                          f"{r['params']:,}", "knee" if r["trial"] == run["knee"] else "")
        console.print(table)
        if run["note"]:
            console.print(run["note"])
    if summary["by"]:
        console.print(f"colours by {summary['by']['property']}: " + ", ".join(
            f"{v} {n}" for v, n in summary["by"]["counts"].items()))
    console.print("wrote " + ", ".join(summary["files"].values()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..analysis.export import export_run, export_training, is_training, selectors
    from ..arch.genome import exported_metadata

    run = Path(args.run)
    out = check_out_folder(args.out or run / "export")
    if is_training(run):
        chosen = selectors(pareto=args.pareto, trial=args.trial, best=args.best, knee=args.knee)
        if chosen:
            raise OptionError(f"{' '.join(chosen)}: not for {run}, a `dla-nas train` folder "
                              "(it holds one network); give no selector")
        paths = export_training(run, out, onnx=args.onnx, weights=args.weights, int8=args.int8)
    else:
        paths = export_run(run, out, pareto=args.pareto, trial=args.trial, best=args.best,
                           knee=args.knee, onnx=args.onnx, weights=args.weights,
                           int8=args.int8)
    for path in paths:
        print(path)
        if path.suffix == ".onnx" and not args.weights:
            print(f"warning: {path.name}: initial weights, not trained ones (good for latency, "
                  "not for predictions): --weights exports the trained ones", file=sys.stderr)
        warning = (exported_metadata(path).get("confirmed") or {}).get("warning") \
            if path.suffix == ".yaml" else None
        if warning:
            print(f"warning: {path.name}: {warning}", file=sys.stderr)
    print(f"exported {sum(p.suffix == '.yaml' for p in paths)} config(s); build one with "
          f"dla_nas.build_model(PATH, num_classes=...) or `dla-nas train PATH --dataset ...`"
          + ("; its trained weights with build_model(PATH, ..., pretrained=PATH.safetensors)"
             if args.weights else ""), file=sys.stderr)
    return 0
