"""What the commands print: progress bars and rich tables (on stderr for progress)."""

from __future__ import annotations

import contextlib


def stderr_console(quiet: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


@contextlib.contextmanager
def epoch_progress(console, epochs: int, quiet: bool):
    """A progress bar over epochs; yields the trainer callback that advances it."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("train", total=epochs, stats="")

        def on_epoch(report) -> None:
            progress.update(task, advance=1, stats=(
                f"loss {report.train_loss:.3f}  val acc {report.val_acc:.3f}  "
                f"{report.images_per_second:,.0f} img/s"))

        yield on_epoch


def print_confirmed(console, confirmed) -> None:
    from rich.table import Table

    console.width = max(console.width, 120)  # the table needs ~115 columns
    table = Table(title="confirmed on the test split (mean over seeds, min-max in brackets)")
    for col in ("candidate", "MACs", "params", "seeds", "test acc", "balanced acc",
                "val acc", "proxy val"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for c in confirmed:
        table.add_row(
            c.label, f"{c.macs:,}", f"{c.params:,}", str(len(c.seeds)),
            f"{c.test_acc[0]:.4f} ({c.test_acc[1]:.3f}-{c.test_acc[2]:.3f})",
            f"{c.test_balanced_acc[0]:.4f}", f"{c.val_acc:.4f}",
            "-" if c.proxy_val_acc is None else f"{c.proxy_val_acc:.4f}")
    console.print(table)


@contextlib.contextmanager
def search_progress(console, opts):
    """The live display of an Optuna search: yields ``(on_start, on_poll)`` for
    ``run_optuna_search``; the header is printed when the run opens, then a bar over trials."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..analysis.pareto import front

    progress = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console)
    state = {}

    def on_start(run, finished: int) -> None:
        space, data = run.space, run.data
        steps = f" / {space.proxy.min_steps} steps" if space.proxy.min_steps else ""
        console.print(f"[bold]search[/] {space.name}: {data['name']} at {data['resolution']} px "
                      f"({data['num_classes']} classes, {data['in_chans']} ch, train "
                      f"{data['train_size']}, augment {data['augment']}), proxy "
                      f"{space.proxy.epochs} epochs{steps} at least, objectives "
                      f"{', '.join(f'{m} ({d[:3]})' for m, d in space.objectives)}, sampler "
                      f"{opts.sampler_name(space)}, {opts.workers} worker(s)")
        console.print(f"run folder {run.store.path}"
                      + (f" (resuming: {finished} trials finished)" if run.resumed else ""))
        state["objectives"] = space.objectives
        progress.start()
        state["task"] = progress.add_task("search", total=opts.trials, completed=finished,
                                          stats="")

    def on_poll(finished: int, running: int, records) -> None:
        accs = [r.val_acc for r in records if r.feasible_and_trained and r.kind == "search"]
        stats = f"running {running}" + (f"  best val_acc {max(accs):.4f}" if accs else "")
        stats += f"  front {len(front(records, state['objectives']))}"
        progress.update(state["task"], completed=min(finished, opts.trials), stats=stats)

    try:
        yield on_start, on_poll
    finally:
        if "task" in state:  # a run that never opened (bad input) prints nothing more
            progress.stop()


def print_summary(console, store, objectives) -> None:
    from rich.table import Table

    from ..analysis.pareto import front

    records = store.records()
    search = [r for r in records if r.kind == "search"]
    by_status = {s: sum(r.status == s for r in search) for s in ("ok", "reused", "infeasible",
                                                                  "diverged", "failed")}
    stopped = sum(r.stopped_rung is not None and r.status == "ok" for r in search)
    console.print("finished " + ", ".join(f"{n} {s}" for s, n in by_status.items() if n)
                  + (f" ({stopped} of the ok stopped early at a rung)" if stopped else ""))
    table = Table(title=f"Pareto front ({', '.join(m for m, _ in objectives)})")
    for col in ("trial", "hash", "val_acc", "MACs", "params", "epochs", "seconds"):
        table.add_column(col, justify="right")
    for r in front(records, objectives):
        table.add_row(str(r.trial), r.hash, f"{r.val_acc:.4f}", f"{r.macs:,}", f"{r.params:,}",
                      str(r.epochs_run), f"{r.wall_seconds:.1f}")
    console.print(table)
    named = [f"trial {r.trial} is {r.name}" for r in front(records, objectives) if r.name]
    if named:
        console.print("hand designs on the front: " + ", ".join(named))
    baselines = [r for r in records if r.kind == "baseline"]
    if baselines:
        bt = Table(title="baselines (same proxy)")
        for col in ("name", "status", "val_acc", "MACs", "params"):
            bt.add_column(col, justify="right")
        for r in baselines:
            bt.add_row(r.name, r.status, "-" if r.val_acc is None else f"{r.val_acc:.4f}",
                       "-" if r.macs is None else f"{r.macs:,}",
                       "-" if r.params is None else f"{r.params:,}")
        console.print(bt)
