"""What the commands print: progress bars and rich tables (on stderr for progress)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable


def stderr_console(quiet: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def _epoch_columns(*first):
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return [*first, TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn()]


def _epoch_stats(report) -> str:
    val = (f"val mIoU {report.val.miou:.3f}" if hasattr(report.val, "miou") else
           f"val acc {report.val_acc:.3f}")
    return f"loss {report.train_loss:.3f}  {val}  {report.images_per_second:,.0f} img/s"


def _epoch_lines(console, label: str = "", every: float = 30.0):
    """Where no bar can be drawn (a log file, CI): a plain line per epoch of one run, at most
    one every ``every`` seconds besides its first and last, so that a long run shows it is
    alive. One line each, however long (a log has no width)."""
    last = -math.inf

    def line(report, epochs: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every and report.epoch != epochs:
            return
        last = now
        console.print(f"{label}epoch {report.epoch}/{epochs}  {_epoch_stats(report)}",
                      highlight=False, markup=False, soft_wrap=True)

    return line


@contextlib.contextmanager
def epoch_progress(console, epochs: int, quiet: bool, done: int = 0):
    """A progress bar over epochs, ``done`` of them already trained (plain lines when stderr
    is not a terminal); yields the trainer callback that advances it."""
    from rich.progress import Progress

    if quiet:
        yield lambda report: None
        return
    if not console.is_terminal:
        line = _epoch_lines(console)
        yield lambda report: line(report, epochs)
        return
    with Progress(*_epoch_columns(), console=console) as progress:
        task = progress.add_task("train", total=epochs, completed=done, stats="")

        def on_epoch(report) -> None:
            progress.update(task, advance=1, stats=_epoch_stats(report))

        yield on_epoch


@contextlib.contextmanager
def unit_progress(console):
    """A bar over the epochs of the confirm unit in training, gone when the next one starts
    or the command ends (each unit's result line stays; plain lines when stderr is not a
    terminal); yields ``confirm``'s ``on_epoch``."""
    from rich.progress import Progress, TextColumn

    if not console.is_terminal:
        lines: dict[tuple, Callable] = {}  # each unit's own, so that its first epoch shows

        def on_line(candidate, seed: int, report) -> None:
            key = (candidate.unit, seed)
            if key not in lines:
                lines[key] = _epoch_lines(console, f"{candidate.label} seed {seed}: ")
            lines[key](report, report.epochs)

        yield on_line
        return
    with Progress(*_epoch_columns(TextColumn("{task.description}")), console=console,
                  transient=True) as progress:
        current: dict[tuple, int] = {}

        def on_epoch(candidate, seed: int, report) -> None:
            key = (candidate.unit, seed)
            if key not in current:  # a new unit: this process trains one at a time
                for task in current.values():
                    progress.remove_task(task)
                current.clear()
                current[key] = progress.add_task(f"{candidate.label} seed {seed}",
                                                 total=report.epochs, stats="")
            progress.update(current[key], completed=report.epoch, stats=_epoch_stats(report))

        yield on_epoch


def print_confirmed(console, confirmed, metric: str = "val_acc") -> None:
    """The confirmed table; its val columns show ``metric``, the accuracy the run ranks by."""
    from rich.table import Table

    console.width = max(console.width, 130)  # the table needs ~125 columns
    table = Table(title="confirmed on the test split (mean over seeds, min-max in brackets)")
    val = {"val_balanced_acc": "val bal. acc", "val_miou": "val mIoU"}.get(metric, "val acc")
    # a dense task's mIoU first; pixel accuracy, mean pixel accuracy and Dice beside it
    dense = metric == "val_miou"
    figures = ("test mIoU", "pixel acc", "mPA", "Dice") if dense else \
        ("test acc", "balanced acc", "macro F1")
    for col in ("candidate", "MACs", "params", "seeds", *figures, val, f"proxy {val}"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for c in confirmed:
        spread = c.test(metric)
        table.add_row(
            c.label, f"{c.macs:,}", f"{c.params:,}", str(len(c.seeds)),
            f"{spread[0]:.4f} ({spread[1]:.3f}-{spread[2]:.3f})",
            *([f"{c.test_acc[0]:.4f}"] if dense else []),
            f"{c.test_balanced_acc[0]:.4f}", f"{c.test_macro_f1:.4f}",
            *(figure(v) for v in c.val(metric)))
    console.print(table)
    for c in confirmed:
        if c.warning is not None:
            console.print(f"[yellow]warning[/]: {c.label}: {c.warning}", highlight=False)


@contextlib.contextmanager
def search_progress(console, opts):
    """The live display of a search, either backend: yields the ``on_event`` callback
    (``SearchEvent``): the header when the run opens, a line for each record, and a bar
    over trials."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..analysis.pareto import accuracy_metric, front

    progress = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console)
    state = {"records": [], "running": 0}

    def start(run, finished: int) -> None:
        space, data = run.space, run.data
        steps = f" / {space.proxy.min_steps} steps" if space.proxy.min_steps else ""
        where = ("Ray Tune" if run.info["backend"] == "ray" else f"{opts.workers} worker(s)")
        console.print(f"[bold]search[/] {space.name}: {data['name']} at {data['resolution']} px "
                      f"({data['num_classes']} classes, {data['in_chans']} ch, train "
                      f"{data['train_size']}, augment {data['augment']}), proxy "
                      f"{space.proxy.epochs} epochs{steps} at least, objectives "
                      f"{', '.join(f'{m} ({d[:3]})' for m, d in space.objectives)}, sampler "
                      f"{opts.sampler_name(space)}, early stopping {opts.early_stopping}, "
                      f"{where}")
        console.print(f"run folder {run.store.path}"
                      + (f" (resuming: {finished} trials finished)" if run.resumed else ""))
        for line in data.get("warnings", []):
            console.print(f"[yellow]warning[/]: {line}", highlight=False)
        state["objectives"] = space.objectives
        state["accuracy"] = accuracy_metric(space.objectives)
        state["records"] = run.store.records()
        progress.start()
        state["task"] = progress.add_task("search", total=opts.trials, completed=finished,
                                          stats="")

    def on_event(event) -> None:
        if event.kind == "start":
            start(event.run, event.finished)
            return
        if event.kind == "note":
            console.print(event.message, style="yellow", markup=False, highlight=False)
            return
        if event.kind == "record":
            state["records"].append(event.record)
            console.print(record_line(event.record, event.resumed_after, state["accuracy"]))
        else:
            state["running"] = event.running
        records = state["records"]
        metric = state["accuracy"]
        accs = [r.value(metric) for r in records if r.feasible_and_trained
                and r.kind == "search" and r.value(metric) is not None]
        stats = f"running {state['running']}" if state["running"] else ""
        stats += f"  best {metric} {max(accs):.4f}" if accs else ""
        stats += f"  front {len(front(records, state['objectives']))}"
        progress.update(state["task"], completed=min(event.finished, opts.trials),
                        stats=stats.strip())

    try:
        yield on_event
    finally:
        if "task" in state:  # a run that never opened (bad input) prints nothing more
            progress.stop()


def record_line(record, resumed_after: int | None = None, metric: str = "val_acc") -> str:
    """One line for a record just written: ``trial 3: ok val_acc 0.9, 1.2M MACs, ...``, with
    the accuracy the run ranks by (``metric``)."""
    from ..results import TRAINED

    what = record.status
    if record.value(metric) is not None and record.status in TRAINED:
        what += f" {metric} {record.value(metric):.4f}"
    if record.macs is not None:
        what += f", {record.macs / 1e6:.3g}M MACs"
    if record.stopped_rung is not None:
        what += f", stopped early after {record.stopped_rung} epochs"
    if record.status == "reused":
        what += f" (from trial {record.reused_from})"
    if resumed_after is not None:
        what += f" (resumed after epoch {resumed_after})"
    if record.status in ("failed", "diverged", "infeasible") and record.reason:
        what += f" ({record.reason})"
    who = f"baseline {record.name}" if record.kind == "baseline" else f"trial {record.trial}"
    return f"{who}: {what}"


def figure(value: float | None) -> str:
    """A 0-1 figure with four decimals, or - when it was not measured."""
    return "-" if value is None else f"{value:.4f}"


def print_summary(console, store, objectives) -> None:
    from rich.table import Table

    from ..analysis.pareto import accuracy_metric, front

    records = store.records()
    search = [r for r in records if r.kind == "search"]
    by_status = {s: sum(r.status == s for r in search) for s in ("ok", "reused", "infeasible",
                                                                  "diverged", "failed")}
    stopped = sum(r.stopped_rung is not None and r.status == "ok" for r in search)
    console.print("finished " + (", ".join(f"{n} {s}" for s, n in by_status.items() if n)
                                 or "no trial")
                  + (f" ({stopped} of the ok stopped early at a rung)" if stopped else ""))
    metric = accuracy_metric(objectives)  # the accuracy the run ranks by
    table = Table(title=f"Pareto front ({', '.join(m for m, _ in objectives)})")
    for col in ("trial", "hash", metric, "MACs", "params", "epochs", "seconds"):
        table.add_column(col, justify="right")
    for r in front(records, objectives):
        table.add_row(str(r.trial), r.hash, figure(r.value(metric)), f"{r.macs:,}",
                      f"{r.params:,}", str(r.epochs_run), f"{r.wall_seconds:.1f}")
    console.print(table)
    named = [f"trial {r.trial} is {r.name}" for r in front(records, objectives) if r.name]
    if named:
        console.print("named on the front: " + ", ".join(named))
    baselines = [r for r in records if r.kind == "baseline"]
    if baselines:
        bt = Table(title="baselines (same proxy)")
        for col in ("name", "status", metric, "MACs", "params"):
            bt.add_column(col, justify="right")
        for r in baselines:
            bt.add_row(r.name, r.status, figure(r.value(metric)),
                       "-" if r.macs is None else f"{r.macs:,}",
                       "-" if r.params is None else f"{r.params:,}")
        console.print(bt)
