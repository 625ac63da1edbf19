"""``search`` and ``confirm``: runs of many trainings."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path

from ..analysis.pareto import accuracy_metric, run_objectives
from ..errors import OptionError, RunError
from ..files import check_out_file, check_out_folder
from ..results import RunStore
from ..train.config import frozen_epochs
from .model_cmds import flag_config
from .render import print_confirmed, print_summary, search_progress, stderr_console, unit_progress


def cmd_search(args: argparse.Namespace) -> int:
    from ..search.core import SearchOptions, load_space

    if args.out:
        check_out_folder(args.out)  # before the space's data is loaded
    opts = SearchOptions(
        space=args.space, trials=args.trials, out=args.out or "", sampler=args.sampler,
        seed=args.seed, workers=args.workers or 1, storage=args.storage, timeout=args.timeout,
        device=args.device, gpus=args.gpus, baselines=args.baselines, data_dir=args.data_dir,
        dataset=args.dataset, resolution=args.resolution, augment=args.augment,
        resize=args.resize, sampling=args.sampling, labels_per_class=args.labels_per_class,
        early_stopping=args.early_stopping or args.scheduler, warm_start=args.warm_start,
        enqueue=args.enqueue,
        latency_threads=args.latency_threads, latency_table=args.latency_table)
    if args.scheduler is not None:
        print("dla-nas search: --scheduler is deprecated; it is --early-stopping now, for "
              "both backends", file=sys.stderr)
    _check_backend_flags(args)
    if not opts.out:
        opts.out = str(check_out_folder(Path("results") / load_space(opts).name, "run folder"))
    console = stderr_console(False)
    try:
        outcome = _run_backend(args, opts, console)
    except KeyboardInterrupt:
        done = len(RunStore(opts.out).search_records())
        console.print(f"[yellow]interrupted[/]: {done} finished trials are saved in "
                      f"{opts.out}; run the same command to continue")
        return 130
    store = RunStore(opts.out)
    print_summary(console, store, run_objectives(store.info()))
    if outcome.worker_errors:
        console.print(f"[red]{len(outcome.worker_errors)} worker(s) exited with an error[/] "
                      "(see above)")
        return 2 if 2 in outcome.worker_errors else 1
    if outcome.finished < opts.trials:
        console.print(_short_of(outcome, opts))
    return 0


def _short_of(outcome, opts) -> str:
    """Why a search ended with fewer finished trials than asked, truly."""
    if outcome.running:  # another search process on the same --out trains them
        return (f"{outcome.finished} of {opts.trials} trials finished here; {outcome.running} "
                f"still running in another process on {opts.out}")
    why = " (--timeout)" if opts.timeout is not None else ""
    return (f"stopped after {outcome.finished} of {opts.trials} trials{why}; run the same "
            "command to continue")


def _run_backend(args: argparse.Namespace, opts, console):
    """Run the search with the chosen backend; its ``Outcome``."""
    from ..search.optuna_backend import Outcome

    with search_progress(console, opts) as on_event:
        if args.backend == "ray":
            from ..search.ray_backend import run_ray_search

            return Outcome(run_ray_search(opts, address=args.address,
                                          gpus_per_trial=args.gpus_per_trial or 0.0,
                                          cpus_per_trial=args.cpus_per_trial or 1.0,
                                          on_event=on_event), [])
        from ..search.optuna_backend import run_optuna_search

        return run_optuna_search(opts, on_event=on_event)


def cmd_confirm(args: argparse.Namespace) -> int:
    from ..analysis.confirm import (
        CONFIRM_FILE,
        ConfirmStore,
        check_candidates,
        check_run_data,
        confirm,
        recipe_of,
        run_candidates,
        summarize,
        unit_of,
    )
    from ..arch.baselines import DENSE_LINE, LINE
    from ..data import Augment
    from ..data.report import data_report, warnings
    from ..results import RunStore
    from ..search.evaluator import load_task_data
    from ..search.space import SearchSpace
    from ..train.metrics import learnt_little
    from ..train.trainer import resolve_device
    from ..weights import Pretrained

    # checked before any training: a unit trained and then not saved is lost
    out = check_out_file(args.out or Path(args.run) / CONFIRM_FILE,
                         "--out" if args.out else "RUN")
    info = RunStore(args.run).info()
    space = SearchSpace.of_run(info)
    line = DENSE_LINE if space.dense else LINE
    baselines = [n for name in args.baselines for n in (line if name == "line" else [name])]
    candidates = run_candidates(args.run, pareto=args.pareto, top=args.top, trials=args.trial,
                                baselines=baselines)
    if not candidates:
        raise RunError("nothing to confirm: choose --pareto, --top K, --trial N or --baselines")
    if args.augment:  # the flag's augmentation replaces one a trial drew
        candidates = [dataclasses.replace(c, searched={k: v for k, v in c.searched.items()
                                                       if k != "augment"}) for c in candidates]
    seeds = args.seeds
    proxy = space.proxy  # a search from pretrained weights is confirmed from them too
    # the search's sampling, init and (through the space's task) augmentation and resize,
    # unless a flag says otherwise: the confirmed network is trained as it was ranked
    cfg = flag_config(epochs=args.epochs, min_steps=args.min_steps, batch_size=args.batch_size,
                      lr=args.lr, device=args.device, threads=args.threads,
                      sampling=args.sampling or proxy.sampling, init=args.init or proxy.init,
                      backbone_lr_mult=proxy.backbone_lr_mult,
                      freeze_epochs=frozen_epochs(proxy.freeze_epochs, args.epochs),
                      freeze_bn=proxy.freeze_bn)
    pretrained = Pretrained(proxy.pretrained) if proxy.pretrained is not None else None
    store = ConfirmStore(out)
    augment = Augment.for_dataset(args.augment, space.task.dataset) if args.augment else None
    if args.labels_per_class:  # instead of the search's
        space = space.with_task(labels_per_class=args.labels_per_class)
    data_dir = args.data_dir or (info.get("options") or {}).get("data_dir")
    device = resolve_device(cfg.device)

    @functools.lru_cache(maxsize=None)
    def data_at(resolution: int | None):  # a searched resolution loads its own copy
        return load_task_data(space, data_dir, train_fraction=1.0, augment=augment,
                              resolution=resolution).to(device)

    data = data_at(None)
    check_run_data(args.run, data)
    check_candidates(candidates, data.resolution, data.dense)
    store.check_recipe(recipe_of(cfg, data, pretrained), data.fingerprint())
    log = stderr_console(False)
    done = {r.key for r in store.records()}
    todo = sum((c.unit, s) not in done for c in candidates for s in seeds)
    log.print(f"[bold]confirm[/] {len(candidates)} candidate(s) x {len(seeds)} seed(s) on "
              f"{data.summary()}; {cfg.epochs_for(len(data.train))} epochs each; "
              f"{cfg.describe(data)}; device {device}; {todo} to train, "
              f"{len(candidates) * len(seeds) - todo} already in {store.path}")
    for line in warnings(data_report(data), cfg.balanced(data)):
        log.print(f"[yellow]warning[/]: {line}", highlight=False)

    def on_done(r, i: int, n: int) -> None:
        figures = (f"test mIoU {r.test_miou:.4f} (pixel acc {r.test_acc:.4f}), val mIoU "
                   f"{r.val_miou:.4f}" if r.test_miou is not None else
                   f"test acc {r.test_acc:.4f} (balanced {r.test_balanced_acc:.4f}), val acc "
                   f"{r.val_acc:.4f}")
        log.print(f"[{i}/{n}] {r.label} seed {r.seed}: {figures}, {r.train_seconds:.0f} s")
        if (warning := learnt_little(r.test_confusion, data.class_names,
                                     "pixels" if data.dense else "images")) is not None:
            log.print(f"[yellow]warning[/]: {r.label} seed {r.seed}: {warning}",
                      highlight=False)

    def on_wait(claims: list[dict]) -> None:
        who = ", ".join(sorted({f"pid {c.get('pid')} on {c.get('host')}" for c in claims}))
        log.print(f"{len(claims)} unit(s) are in training by another confirm ({who}); "
                  "waiting for those of this machine, leaving the others to theirs")

    try:
        with unit_progress(log) as on_epoch:
            records = confirm(candidates, seeds, data, cfg, store, on_done, data_at, pretrained,
                              on_wait, on_epoch=on_epoch)
    except KeyboardInterrupt:
        log.print(f"[yellow]interrupted[/]: finished units are saved in {store.path}, and the "
                  "unit in training after its last epoch; run the same command to continue")
        return 130
    wanted = {c.unit for c in candidates}
    print_confirmed(log, [c for c in summarize(records, data.class_names)
                          if unit_of(c.kind, c.label, c.hash) in wanted],
                    accuracy_metric(run_objectives(info)))
    return 0


def _check_backend_flags(args: argparse.Namespace) -> None:
    """Ray's own flags given to the Optuna backend are an error, not silently ignored (the
    Optuna backend's, which ``SearchOptions`` holds, ``check_ray_options`` refuses)."""
    if args.backend == "ray":
        return
    for flag in ("address", "gpus_per_trial", "cpus_per_trial"):
        if getattr(args, flag) is not None:
            raise OptionError(f"--{flag.replace('_', '-')}: only for --backend ray (this search "
                              f"uses --backend {args.backend})")
