"""The ``dla-nas`` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .data import DataError
from .genome import GenomeError
from .results import RunError
from .space import SpaceError
from .training import CheckpointError, TrainConfig, TrainError

TRAIN_DEFAULTS = TrainConfig(min_steps=1000)  # the recipe of `train` and `confirm`
# errors that are the user's input, not our bug: printed as one line, exit status 2
USER_ERRORS: tuple[type[Exception], ...] = (GenomeError, DataError, TrainError, CheckpointError,
                                            SpaceError, RunError)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``3x224x224`` -> (3, 224, 224); a single number N means 3xNxN."""
    m = re.fullmatch(r"\s*(?:(\d+)x)?(\d+)(?:x(\d+))?\s*", text)
    if not m or (m.group(1) and not m.group(3)):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (CxHxW such as 3x224x224, or N)")
    c, h, w = m.group(1), m.group(2), m.group(3)
    shape = (int(c), int(h), int(w)) if c else (3, int(h), int(h if w is None else w))
    if min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (every dimension >= 1)")
    return shape


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (an integer >= 1)")
    return value


# ---- show ----------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from .builder import build_model, resolve_genome
    from .cost import model_cost

    genome = resolve_genome(args.genome)
    c, h, w = args.input
    genome.feature_sizes(min(h, w))
    model = build_model(genome, num_classes=args.classes, in_chans=c)
    cost = model_cost(model, args.input)
    levels = _describe_levels(genome)
    if args.json:
        out = {
            "name": genome.name or str(args.genome),
            "hash": genome.canonical_hash(),
            "input": list(args.input),
            "classes": args.classes,
            "params": cost.params,
            "macs": cost.macs,
            "other_flops": cost.other_flops,
            "stages": [{**lc.__dict__, "kind": desc} for lc, desc in zip(cost.levels, levels)],
            "genome": genome.to_dict(),
        }
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = f"{genome.name or args.genome}  hash {genome.canonical_hash()}  block {genome.block}"
    if genome.block == "bottleneckx":
        title += f" (cardinality {genome.cardinality})"
    table = Table(title=title)
    for col in ("level", "structure", "channels", "out size", "params", "MACs"):
        table.add_column(col, justify="left" if col in ("level", "structure") else "right",
                         no_wrap=True)
    for lc, desc in zip(cost.levels, levels):
        table.add_row(lc.name, desc, str(lc.channels), f"{lc.size}x{lc.size}",
                      f"{lc.params:,}", f"{lc.macs:,}")
    table.add_row("total", f"in {c}x{h}x{w}", "", "", f"{cost.params:,}", f"{cost.macs:,}",
                  style="bold")
    console = Console(width=max(Console().width, 110))  # the table needs ~100 columns
    console.print(table)
    console.print("structure: d depth, fan fan-in, /s stride, +in stage input joins the root "
                  "(level_root), +idaJ stage J joins too, rootK root kernel K, r residual")
    console.print(f"MACs are conv+linear multiply-accumulates; batch norm and pooling add "
                  f"{cost.other_flops:,} more (see README, 'Cost').")
    return 0


def _describe_levels(genome) -> list[str]:
    """One short structure note per level, plus the head."""
    stem = genome.stem
    out = [f"base {stem.kernel}x{stem.kernel}/{stem.stride} + {stem.levels[0].convs} conv/"
           f"{stem.levels[0].stride}"]
    out += [f"{lv.convs} conv/{lv.stride}" for lv in stem.levels[1:]]
    for st in genome.stages:
        text = f"tree d{st.depth} fan{st.fan_in} /{st.stride}"
        if st.level_root:
            text += " +in"
        if st.ida_from:
            text += " +ida" + ",".join(str(j) for j in st.ida_from)
        if st.root_kernel != 1 or st.root_residual:
            text += f" root{st.root_kernel}{'r' if st.root_residual else ''}"
        out.append(text)
    return out + ["pool + 1x1 conv"]


# ---- train / eval ----------------------------------------------------------------------------
def _data_config(args: argparse.Namespace, resolution: int | None):
    from .data import Augment, DataConfig

    augment = Augment.for_dataset(args.augment, args.dataset) if getattr(args, "augment", None) \
        else None
    return DataConfig(args.dataset, resolution=resolution, train_fraction=args.train_fraction,
                      seed=args.split_seed, data_dir=args.data_dir, download=args.download,
                      augment=augment)


def _default_out(prefix: str, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:40] or "run"
    return Path("results") / f"{prefix}-{safe}-{stamp}"


def cmd_train(args: argparse.Namespace) -> int:
    from .baselines import baseline_genome, baseline_hash, build_candidate, is_baseline
    from .builder import resolve_genome
    from .cost import model_cost
    from .data import load_dataset, make_loader
    from .training import TrainConfig, evaluate, resolve_device, save_checkpoint, train

    baseline = args.genome if is_baseline(args.genome) else None
    genome = baseline_genome(baseline) if baseline else resolve_genome(args.genome)
    label = baseline or genome.name or Path(str(args.genome)).stem
    cfg = TrainConfig(epochs=args.epochs, min_steps=args.min_steps, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, device=args.device, threads=args.threads,
                      compile=args.compile, schedule=args.schedule,
                      balanced_loss=args.balanced_loss)
    data = load_dataset(_data_config(args, args.resolution))
    if genome is not None:
        genome.feature_sizes(data.resolution)
    device = resolve_device(cfg.device)
    data = data.to(device)
    import torch

    torch.manual_seed(cfg.seed)  # the seed fixes the initial weights too
    model = build_candidate(baseline or genome, data.num_classes, data.in_chans,
                            zero_init_residual=cfg.zero_init_residual)
    cost = model_cost(model, (data.in_chans, data.resolution, data.resolution))
    out = Path(args.out) if args.out else _default_out("train", label)
    out.mkdir(parents=True, exist_ok=True)
    log = _console(args.json)
    digest = genome.canonical_hash() if genome is not None else baseline_hash(baseline)
    log.print(f"[bold]{label}[/] ({digest}): {cost.params:,} params, {cost.macs:,} MACs at "
              f"{data.resolution}px")
    epochs = cfg.epochs_for(len(data.train))
    log.print(data.summary() + f"; device {device}; {epochs} epochs of "
              f"{cfg.steps_per_epoch(len(data.train))} steps")
    with _epoch_progress(log, epochs, args.json) as on_epoch:
        result = train(model, data, cfg, callback=on_epoch)
    test_loader = make_loader(data, "test", cfg.eval_batch_size, device, train=False, seed=cfg.seed,
                              channels_last=device.type == "cuda")
    test = evaluate(model, test_loader, data.num_classes, autocast=device.type == "cuda")
    metrics = {
        "genome": label, "hash": digest, "dataset": data.name, "resolution": data.resolution,
        "class_names": data.class_names, "params": cost.params, "macs": cost.macs,
        **result.to_dict(), **test.to_dict("test_"),
    }
    save_checkpoint(out / "checkpoint.pt", model, cfg, data,
                    {"metrics": metrics, "baseline": baseline})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if args.json:
        print(json.dumps(metrics))
    else:
        status = "[red]diverged[/] " + result.divergence if result.diverged else "done"
        log.print(f"{status}: val acc {result.val_acc:.4f}, test acc {test.acc:.4f} (balanced "
                  f"{test.balanced_acc:.4f}, macro F1 {test.macro_f1:.4f}), "
                  f"{result.train_seconds:.1f} s, {result.images_per_second:,.0f} images/s")
        log.print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'}")
    return 1 if result.diverged else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .baselines import build_baseline
    from .builder import build_model
    from .data import load_dataset, make_loader
    from .genome import Genome
    from .training import evaluate, load_checkpoint, resolve_device

    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt["data"]
    data = load_dataset(_data_config(args, args.resolution or meta["resolution"]))
    if (data.num_classes, data.in_chans) != (meta["num_classes"], meta["in_chans"]):
        raise DataError(
            f"dataset: {args.dataset} has {data.num_classes} classes and {data.in_chans} channels; "
            f"{args.checkpoint} was trained for {meta['num_classes']} classes and "
            f"{meta['in_chans']} channels")
    device = resolve_device(args.device)
    if ckpt.get("baseline"):
        model = build_baseline(ckpt["baseline"], ckpt["num_classes"], meta["in_chans"])
    else:
        model = build_model(Genome.from_dict(ckpt["genome"]), ckpt["num_classes"],
                            meta["in_chans"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device)
    # normalise with the statistics the model was trained with
    data = dataclasses.replace(data, mean=tuple(meta["mean"]), std=tuple(meta["std"])).to(device)
    loader = make_loader(data, args.split, 500, device, train=False, seed=0)
    m = evaluate(model, loader, data.num_classes, autocast=device.type == "cuda")
    out = {"checkpoint": str(args.checkpoint), "dataset": data.name, "split": args.split,
           "resolution": data.resolution, **m.to_dict(), "images": m.n}
    print(json.dumps(out) if args.json else
          f"{args.split} accuracy {m.acc:.4f} (balanced {m.balanced_acc:.4f}, macro F1 "
          f"{m.macro_f1:.4f}, loss {m.loss:.4f}) on {m.n} images of {data.name}")
    return 0


def _console(quiet: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


@contextlib.contextmanager
def _epoch_progress(console, epochs: int, quiet: bool):
    """A progress bar over epochs; yields the trainer callback that advances it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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


# ---- search / status ---------------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    from .search import SearchOptions, counts, launch_workers, start, stop_workers

    opts = SearchOptions(
        space=args.space, trials=args.trials, out=args.out or "", sampler=args.sampler,
        seed=args.seed, workers=args.workers or 1, storage=args.storage, timeout=args.timeout,
        device=args.device, gpus=args.gpus, baselines=args.baselines, data_dir=args.data_dir,
        dataset=args.dataset, resolution=args.resolution)
    if not opts.out:
        from .search import load_space

        opts.out = str(Path("results") / load_space(opts).name)
    _check_backend_flags(args)
    if args.backend == "ray":
        return _search_ray(args, opts)
    space, store, study, resumed, data = start(opts)
    console = _console(False)
    done, _ = counts(study, store)
    console.print(f"[bold]search[/] {space.name}: {data['name']} at {data['resolution']} px "
                  f"({data['num_classes']} classes, {data['in_chans']} ch, train "
                  f"{data['train_size']}, augment {data['augment']}), proxy "
                  f"{space.proxy.epochs} epochs"
                  f"{f' / {space.proxy.min_steps} steps' if space.proxy.min_steps else ''} at least, "
                  f"objectives {', '.join(f'{m} ({d[:3]})' for m, d in space.objectives)}, "
                  f"sampler {opts.sampler_name(space)}, {opts.workers} worker(s)")
    console.print(f"run folder {store.path}" + (f" (resuming: {done} trials finished)" if resumed else ""))
    procs = launch_workers(opts)
    try:
        _monitor(console, procs, study, store, space, opts.trials)
    except KeyboardInterrupt:
        stop_workers(procs)
        done, _ = counts(study, store)
        console.print(f"[yellow]interrupted[/]: {done} finished trials are saved in {store.path}; "
                      "run the same command to continue")
        return 130
    failed = [p for p in procs if p.exitcode not in (0, None)]
    _print_summary(console, store, space.objectives)
    done, _ = counts(study, store)
    if failed:
        console.print(f"[red]{len(failed)} worker(s) exited with an error[/] (see above)")
        return 2 if any(p.exitcode == 2 for p in failed) else 1
    if done < opts.trials:
        console.print(f"stopped after {done} of {opts.trials} trials (--timeout); run the same "
                      "command to continue")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from .baselines import LINE
    from .confirm import (CONFIRM_FILE, ConfirmStore, check_candidates, confirm, recipe_of,
                          run_candidates, summarize)
    from .data import Augment
    from .proxy import load_task_data
    from .results import RunStore
    from .space import SearchSpace
    from .training import resolve_device

    info = RunStore(args.run).info()
    baselines = [n for name in args.baselines for n in (LINE if name == "line" else [name])]
    candidates = run_candidates(args.run, pareto=args.pareto, top=args.top, trials=args.trial,
                                baselines=baselines)
    if not candidates:
        raise RunError("nothing to confirm: choose --pareto, --top K, --trial N or --baselines")
    seeds = args.seeds
    cfg = TrainConfig(epochs=args.epochs, min_steps=args.min_steps, batch_size=args.batch_size,
                      lr=args.lr, device=args.device, threads=args.threads,
                      balanced_loss=args.balanced_loss)
    store = ConfirmStore(args.out or Path(args.run) / CONFIRM_FILE)
    space = SearchSpace.from_dict(info["space"], info.get("space_path", "<run.yaml>"))
    augment = Augment.for_dataset(args.augment, space.task.dataset) if args.augment else None
    data_dir = args.data_dir or (info.get("options") or {}).get("data_dir")
    data = load_task_data(space, data_dir, train_fraction=1.0, augment=augment)
    device = resolve_device(cfg.device)
    data = data.to(device)
    check_candidates(candidates, data.resolution)
    store.check_recipe(recipe_of(cfg, data))
    log = _console(False)
    done = {r.key for r in store.records()}
    todo = sum((c.hash, s) not in done for c in candidates for s in seeds)
    log.print(f"[bold]confirm[/] {len(candidates)} candidate(s) x {len(seeds)} seed(s) on "
              f"{data.summary()}; {cfg.epochs_for(len(data.train))} epochs each; device "
              f"{device}; {todo} to train, {len(candidates) * len(seeds) - todo} already in "
              f"{store.path}")

    def on_done(r, i: int, n: int) -> None:
        log.print(f"[{i}/{n}] {r.label} seed {r.seed}: test acc {r.test_acc:.4f} (balanced "
                  f"{r.test_balanced_acc:.4f}), val acc {r.val_acc:.4f}, "
                  f"{r.train_seconds:.0f} s")

    try:
        records = confirm(candidates, seeds, data, cfg, store, on_done)
    except KeyboardInterrupt:
        log.print(f"[yellow]interrupted[/]: finished units are saved in {store.path}; run the "
                  "same command to continue")
        return 130
    wanted = {c.hash for c in candidates}
    _print_confirmed(log, [c for c in summarize(records) if c.hash in wanted])
    return 0


def _print_confirmed(console, confirmed) -> None:
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


def _check_backend_flags(args: argparse.Namespace) -> None:
    """Flags of one backend given to the other are an error, not silently ignored."""
    own = {"optuna": ("workers", "storage", "gpus"),
           "ray": ("address", "gpus_per_trial", "cpus_per_trial", "scheduler")}
    for backend, flags in own.items():
        for flag in flags:
            if backend != args.backend and getattr(args, flag) is not None:
                raise GenomeError(f"--{flag.replace('_', '-')}: only for --backend {backend} "
                                  f"(this search uses --backend {args.backend})")


def _search_ray(args: argparse.Namespace, opts) -> int:
    from .results import RunStore
    from .search_ray import run_ray_search

    opts.workers = 1
    console = _console(False)
    console.print(f"[bold]search[/] {args.space} with Ray Tune into {opts.out}")
    try:
        done = run_ray_search(opts, address=args.address,
                              gpus_per_trial=args.gpus_per_trial or 0.0,
                              cpus_per_trial=args.cpus_per_trial or 1.0,
                              scheduler=args.scheduler or "asha")
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: finished trials are saved in {opts.out}; run the "
                      "same command to continue")
        return 130
    store = RunStore(opts.out)
    from .pareto import run_objectives

    _print_summary(console, store, run_objectives(store.info()))
    if done < opts.trials:
        console.print(f"stopped after {done} of {opts.trials} trials; run the same command to "
                      "continue")
    return 0


def _monitor(console, procs, study, store, space, total: int) -> None:
    """Live progress until every worker has exited."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .pareto import front
    from .search import counts

    with Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=console) as progress:
        done, _ = counts(study, store)
        task = progress.add_task("search", total=total, completed=done, stats="")
        while True:
            alive = any(p.is_alive() for p in procs)
            records = store.records()
            done, running = counts(study, store)
            accs = [r.val_acc for r in records if r.feasible_and_trained and r.kind == "search"]
            stats = (f"running {running}  best val_acc {max(accs):.4f}" if accs
                     else f"running {running}")
            stats += f"  front {len(front(records, space.objectives))}"
            progress.update(task, completed=min(done, total), stats=stats)
            if not alive:
                break
            time.sleep(1.0)


def _print_summary(console, store, objectives) -> None:
    from rich.table import Table

    from .pareto import front

    records = store.records()
    search = [r for r in records if r.kind == "search"]
    by_status = {s: sum(r.status == s for r in search) for s in ("ok", "reused", "infeasible",
                                                                  "diverged", "failed")}
    console.print("finished " + ", ".join(f"{n} {s}" for s, n in by_status.items() if n))
    table = Table(title=f"Pareto front ({', '.join(m for m, _ in objectives)})")
    for col in ("trial", "hash", "val_acc", "MACs", "params", "epochs", "seconds"):
        table.add_column(col, justify="right")
    for r in front(records, objectives):
        table.add_row(str(r.trial), r.hash, f"{r.val_acc:.4f}", f"{r.macs:,}", f"{r.params:,}",
                      str(r.epochs_run), f"{r.wall_seconds:.1f}")
    console.print(table)
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


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .pareto import run_objectives
    from .results import RunStore, load_run

    store = RunStore(args.run)
    info = store.info()
    records = load_run(args.run)
    objectives = run_objectives(info)
    console = Console(width=max(Console().width, 120))
    space = info.get("space", {})
    console.print(f"[bold]{store.path}[/]: space {space.get('name', '?')}, backend "
                  f"{info.get('backend', '?')}, created {info.get('created', '?')}")
    table = Table()
    for col in ("trial", "kind", "status", "hash", "val_acc", "MACs", "params", "epochs",
                "seconds", "note"):
        table.add_column(col, justify="left" if col in ("kind", "status", "hash", "note") else "right")
    for r in sorted(records, key=lambda r: r.trial):
        note = r.reason or (f"reuses trial {r.reused_from}" if r.reused_from is not None else "")
        if r.repairs:
            note = (note + "; " if note else "") + f"{len(r.repairs)} repair(s)"
        table.add_row(str(r.trial), r.name or r.kind, r.status, r.hash,
                      "-" if r.val_acc is None else f"{r.val_acc:.4f}",
                      "-" if r.macs is None else f"{r.macs:,}",
                      "-" if r.params is None else f"{r.params:,}", str(r.epochs_run),
                      f"{r.wall_seconds:.1f}", note)
    console.print(table)
    _print_summary(console, store, objectives)
    from .confirm import load_confirmed

    confirmed = load_confirmed(args.run)
    if confirmed:
        _print_confirmed(console, confirmed)
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .plots import plot_pareto

    out = Path(args.out) if args.out else Path(args.runs[0])
    summary = plot_pareto([Path(r) for r in args.runs], x=args.x, y=args.y, out=out)
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
    console.print("wrote " + ", ".join(summary["files"].values()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    out = Path(args.out) if args.out else Path(args.run) / "export"
    paths = export_run(Path(args.run), out, pareto=args.pareto, trial=args.trial, best=args.best,
                       knee=args.knee, onnx=args.onnx)
    for path in paths:
        print(path)
    print(f"exported {sum(p.suffix == '.yaml' for p in paths)} config(s); build one with "
          f"dla_nas.build_model(PATH, num_classes=...) or `dla-nas train PATH --dataset ...`",
          file=sys.stderr)
    return 0


def comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in comma_list(text)]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (integers >= 0 such as 0,1,2)")
    return list(dict.fromkeys(values))


def gpu_list(text: str) -> list[int]:
    try:
        return [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (GPU indices such as 0,1)") from None


def add_data_args(p: argparse.ArgumentParser, resolution_help: str) -> None:
    p.add_argument("--dataset", default="digits", metavar="NAME",
                   help="digits (embedded, default), cifar10, cifar100 or folder:PATH "
                        "(PATH/<class>/*.png|jpg)")
    p.add_argument("--data-dir", default=None,
                   help="where CIFAR archives or folders are (default ~/.cache/dla-nas/data)")
    p.add_argument("--download", action="store_true",
                   help="download the CIFAR archive when it is not in --data-dir")
    p.add_argument("--resolution", type=positive_int, default=None, help=resolution_help)
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="stratified fraction of the train split to use (default 1.0)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the train/val/test split (default 0; fixed across runs)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """How a network is trained: the options that train and confirm share."""
    p.add_argument("--epochs", type=positive_int, default=TRAIN_DEFAULTS.epochs,
                   help=f"at least this many epochs (default {TRAIN_DEFAULTS.epochs})")
    p.add_argument("--min-steps", type=int, default=TRAIN_DEFAULTS.min_steps, metavar="N",
                   help="at least this many optimiser steps: small data sets get more epochs "
                        f"(default {TRAIN_DEFAULTS.min_steps}; 0 turns it off)")
    p.add_argument("--batch-size", type=positive_int, default=TRAIN_DEFAULTS.batch_size,
                   help=f"default {TRAIN_DEFAULTS.batch_size}")
    p.add_argument("--lr", type=float, default=TRAIN_DEFAULTS.lr,
                   help=f"peak learning rate (default {TRAIN_DEFAULTS.lr})")
    p.add_argument("--augment", default=None, metavar="LIST",
                   help="none, or a comma list of hflip, vflip, shift (default: by dataset; "
                        "digits: shift; CIFAR: hflip,shift; folders: hflip,vflip,shift with "
                        "reflect padding)")
    p.add_argument("--balanced-loss", action="store_true",
                   help="weight each class's loss by 1 / its frequency (imbalanced data)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's choice)")


# ---- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dla-nas",
        description="Neural architecture search over Deep Layer Aggregation (DLA) networks: "
                    "describe networks as genomes, count their cost, train them, and search "
                    "for the best accuracy per MAC.",
    )
    parser.add_argument("--version", action="version", version=f"dla-nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    show = sub.add_parser(
        "show", help="print a genome's structure, params and MACs",
        description="Print the structure of a zoo network or a genome/exported YAML file, "
                    "with params and conv+linear MACs per level for one input size.",
    )
    show.add_argument("genome", metavar="NAME_OR_YAML",
                      help="a zoo name (e.g. dla34, dla34_cifar) or a genome/exported YAML path")
    show.add_argument("--input", type=parse_input_shape, default=(3, 224, 224),
                      metavar="CxHxW", help="input shape (default 3x224x224; N means 3xNxN)")
    show.add_argument("--classes", type=positive_int, default=1000,
                      help="number of output classes (default 1000)")
    show.add_argument("--json", action="store_true",
                      help="print one JSON object (params, macs, hash, stages, genome)")
    show.set_defaults(func=cmd_show)

    tr = sub.add_parser(
        "train", help="train a genome and evaluate it on the test split",
        description="Train a genome/exported YAML, a zoo network or a hand-designed baseline "
                    "on a dataset, with a progress bar; then evaluate on the test split and "
                    "write checkpoint.pt and metrics.json (accuracy, balanced accuracy, macro "
                    "F1, per-class recall, confusion matrix) to --out.",
    )
    tr.add_argument("genome", metavar="GENOME",
                    help="a genome/exported YAML path, a zoo name, or a baseline (plain_cnn, "
                         "resnet20, dla34_cifar_x0.25, ...)")
    add_data_args(tr, "image size in px (default: the dataset's own, 8 for digits, 32 for CIFAR)")
    add_recipe_args(tr)
    tr.add_argument("--schedule", choices=["onecycle", "cosine"], default="onecycle",
                    help="onecycle: 1 warm-up epoch then cosine (default); cosine: no warm-up")
    tr.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    tr.add_argument("--compile", action="store_true", help="use torch.compile (off by default)")
    tr.add_argument("--out", default=None,
                    help="output folder (default results/train-<name>-<time>)")
    tr.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval", help="re-evaluate a saved checkpoint",
        description="Evaluate a checkpoint.pt written by 'dla-nas train' on a dataset split. "
                    "The file is read with torch.load(weights_only=True): no code in it runs.",
    )
    ev.add_argument("checkpoint", metavar="CHECKPOINT", help="path to checkpoint.pt")
    add_data_args(ev, "image size in px (default: the checkpoint's)")
    ev.add_argument("--split", choices=["test", "val"], default="test", help="default test")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=cmd_eval)

    se = sub.add_parser(
        "search", help="search a space for the best accuracy per MAC (Optuna)",
        description="Search a YAML space (search_spaces/*.yaml): sample genomes, count their "
                    "cost, train the feasible ones with the space's proxy, and keep a Pareto "
                    "front. Results go to --out (default results/<space name>); running the same "
                    "command again continues the run.",
    )
    se.add_argument("--space", required=True, metavar="FILE", help="search space YAML")
    se.add_argument("--trials", type=positive_int, default=12,
                    help="finished trials to reach, resumed ones included (default 12)")
    se.add_argument("--out", default=None, metavar="DIR", help="run folder (default results/<space>)")
    se.add_argument("--sampler", choices=["nsga2", "tpe", "random"], default=None,
                    help="default nsga2 for several objectives, tpe for one")
    se.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    se.add_argument("--backend", choices=["optuna", "ray"], default="optuna",
                    help="optuna: worker processes on this machine (default); ray: Ray Tune, "
                         "on a local Ray or a cluster (--address)")
    se.add_argument("--workers", type=positive_int, default=None,
                    help="optuna: worker processes on one study (default 1); CPU cores are "
                         "split between them, or one GPU each")
    se.add_argument("--gpus", type=gpu_list, default=None, metavar="0,1,...",
                    help="GPUs for the workers (default: all visible)")
    se.add_argument("--storage", default=None, metavar="URL",
                    help="an Optuna RDB URL (sqlite:///..., postgresql://...) instead of the "
                         "run's journal file")
    se.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="start no new trial after this many seconds")
    se.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    se.add_argument("--baselines", type=comma_list, default=[], metavar="NAMES",
                    help="comma-separated networks trained with the same proxy for comparison: "
                         "plain_cnn, plain_cnn_8_16_32, resnet8/14/20, zoo names such as "
                         "dla46_c_cifar, or narrowed ones such as dla34_cifar_x0.25")
    se.add_argument("--data-dir", default=None, help="where CIFAR archives or folders are")
    se.add_argument("--dataset", default=None, metavar="NAME",
                    help="search on this data instead of the space's task.dataset: digits, "
                         "cifar10, cifar100 or folder:PATH (PATH/<class>/*.png|jpg)")
    se.add_argument("--resolution", type=positive_int, default=None, metavar="PX",
                    help="image size instead of the space's task.resolution")
    se.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                    help="ray: join this cluster (default: start a local Ray, loopback only, "
                         "no dashboard)")
    se.add_argument("--gpus-per-trial", type=float, default=None, metavar="G",
                    help="ray: GPUs per trial, fractions such as 0.5 pack trials (default 0)")
    se.add_argument("--cpus-per-trial", type=float, default=None, metavar="C",
                    help="ray: CPUs per trial (default 1)")
    se.add_argument("--scheduler", choices=["asha", "none"], default=None,
                    help="ray: early stopping; asha ranks on val_acc at each rung (default "
                         "asha)")
    se.set_defaults(func=cmd_search)

    co = sub.add_parser(
        "confirm", help="retrain chosen trials and baselines with several seeds; test once",
        description="Retrain chosen trials of a run and hand-designed baselines with several "
                    "seeds, each with the same full recipe, and evaluate each once on the test "
                    "split, which the search never saw. Results go to RUN/confirm.jsonl, one "
                    "line per finished (candidate, seed); running the same command again "
                    "continues and retrains nothing that finished. `status`, `pareto` and "
                    "`export` show the confirmed figures.",
    )
    co.add_argument("run", metavar="RUN", help="a run folder, e.g. results/demo")
    co.add_argument("--pareto", action="store_true", help="every trial on the Pareto front")
    co.add_argument("--top", type=positive_int, default=None, metavar="K",
                    help="the K best trials by the run's accuracy objective")
    co.add_argument("--trial", type=int_list, default=[], metavar="N,...",
                    help="these trial numbers")
    co.add_argument("--baselines", type=comma_list, default=[], metavar="NAMES",
                    help="hand designs trained alongside: 'line' (plain_cnn at three widths, "
                         "resnet8/14/20, dla34_cifar_x0.25, dla46_c_cifar) or names")
    co.add_argument("--seeds", type=int_list, default=[0, 1, 2], metavar="S,...",
                    help="training seeds (default 0,1,2)")
    add_recipe_args(co)
    co.add_argument("--data-dir", default=None, help="where CIFAR archives or folders are")
    co.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    co.add_argument("--out", default=None, metavar="FILE",
                    help="the confirmation file (default RUN/confirm.jsonl)")
    co.set_defaults(func=cmd_confirm)

    st = sub.add_parser("status", help="print a table of a run's trials",
                        description="Print every trial of a run folder, and its Pareto front.")
    st.add_argument("run", metavar="RUN", help="a run folder, e.g. results/demo")
    st.set_defaults(func=cmd_status)

    pa = sub.add_parser(
        "pareto", help="plot the accuracy/cost trade-off of one or more runs",
        description="Write pareto.png (all trials, the front as a step line, baselines "
                    "labelled), hypervolume.png (hypervolume after each trial, one line per run) "
                    "and an interactive pareto.html, and print each run's front.",
    )
    pa.add_argument("runs", nargs="+", metavar="RUN", help="run folders, e.g. results/demo")
    pa.add_argument("--x", default="macs", choices=["macs", "params", "latency_ms"],
                    help="cost axis (default macs, log scale)")
    pa.add_argument("--y", default=None, choices=["val_acc", "val_balanced_acc"],
                    help="accuracy axis (default: the run's accuracy objective)")
    pa.add_argument("--out", default=None, metavar="DIR",
                    help="output folder (default: the first run's folder)")
    pa.set_defaults(func=cmd_pareto)

    ex = sub.add_parser(
        "export", help="write chosen trials as model configs (YAML, optional ONNX)",
        description="Write one YAML model config per chosen trial: the genome plus metadata "
                    "(run, trial, hash, dataset, fidelity, objective values, params and MACs). "
                    "Each config is rebuilt and checked against the run's params and MACs.",
    )
    ex.add_argument("run", metavar="RUN", help="a run folder, e.g. results/demo")
    pick = ex.add_mutually_exclusive_group(required=True)
    pick.add_argument("--pareto", action="store_true", help="every trial on the Pareto front")
    pick.add_argument("--trial", type=int, default=None, metavar="N", help="trial number N")
    pick.add_argument("--best", default=None, metavar="OBJECTIVE",
                      help="the best trial for one objective, e.g. val_acc")
    pick.add_argument("--knee", action="store_true", help="the knee of the front")
    ex.add_argument("--onnx", action="store_true",
                    help="also export ONNX graphs (needs pip install 'dla-nas[onnx]')")
    ex.add_argument("--out", default=None, metavar="DIR", help="default RUN/export")
    ex.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except USER_ERRORS as exc:
        print(f"dla-nas {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
