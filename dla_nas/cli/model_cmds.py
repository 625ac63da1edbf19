"""``show``, ``train``, ``eval`` and ``predict``: one network at a time."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..errors import DataError, OptionError, TrainError
from ..files import check_out_file, check_out_folder, folder_lock, safe_name, write_file
from .render import epoch_progress, stderr_console


def cmd_show(args: argparse.Namespace) -> int:
    from ..arch.backbone_genome import BackboneGenome
    from ..arch.builder import build_model, resolve_genome
    from ..arch.cost import model_cost
    from ..arch.genome import exported_metadata

    genome = resolve_genome(args.genome)
    meta = exported_metadata(args.genome)  # an exported winner is shown as it was searched
    shape = args.input or tuple(meta.get("input_shape", (3, 224, 224)))
    classes = args.classes or int(meta.get("num_classes", 1000))
    c, h, w = shape
    genome.check_input(shape)
    model = build_model(genome, num_classes=classes, in_chans=c)
    cost = model_cost(model, shape)
    if isinstance(genome, BackboneGenome):
        return _show_backbone(args, genome, model, cost, shape)
    levels = _describe_levels(genome)
    if args.json:
        out = {
            "name": genome.name or str(args.genome),
            "hash": genome.canonical_hash(),
            "input": list(shape),
            "classes": classes,
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
    console.print(f"{genome.block} blocks; d depth, fan fan-in, chain xN: N blocks and no "
                  "aggregation, /s stride, +in stage input joins the root (level_root), +idaJ "
                  "stage J joins too, rootK root kernel K, r residual")
    console.print(f"MACs are conv+linear multiply-accumulates; batch norm and pooling add "
                  f"{cost.other_flops:,} more (see docs/guide/genomes.md, 'Cost').")
    return 0


def _show_backbone(args: argparse.Namespace, genome, model, cost, shape) -> int:
    """``show`` of a backbone genome: its levels (taps) and totals."""
    taps = getattr(model, "feature_info", [])  # the own head taps nothing
    if args.json:
        print(json.dumps({"name": genome.name or str(args.genome), "hash": genome.canonical_hash(),
                          "input": list(shape), "params": cost.params, "macs": cost.macs,
                          "other_flops": cost.other_flops, "taps": taps,
                          "genome": genome.to_dict()}, indent=2))
        return 0
    from rich.console import Console

    console = Console(width=max(Console().width, 110))
    console.print(f"[bold]{genome.name or args.genome}[/]  hash {genome.canonical_hash()}: "
                  f"{genome.describe()}", highlight=False)
    for tap in taps:
        console.print(f"  level {tap['module']}: {tap['num_chs']} channels at stride "
                      f"{tap['reduction']}", highlight=False)
    console.print(f"[bold]{cost.params:,} params, {cost.macs:,} MACs[/] at "
                  f"{'x'.join(map(str, shape))}", highlight=False)
    return 0


def _describe_levels(genome) -> list[str]:
    """One short structure note per level, plus the head."""
    stem = genome.stem
    base = f"base {stem.kernel}x{stem.kernel}/{stem.stride}" + (" + pool/2" if stem.pool else "")
    out = [f"{lv.convs} conv/{lv.stride}" for lv in stem.levels]
    for st in genome.stages:
        text = (f"tree d{st.depth} fan{st.fan_in}" if st.is_tree else f"chain x{st.blocks}")
        text += f" /{st.stride}" + {"strided": "", "pool_first": " pool first",
                                    "pool_last": " pool last"}[st.downsample]
        if st.level_root:
            text += " +in"
        if st.ida_from:
            text += " +ida" + ",".join(str(j) for j in st.ida_from)
        if st.has_root and (st.root_kernel != 1 or st.root_residual):
            text += f" root{st.root_kernel}{'r' if st.root_residual else ''}"
        out.append(text)
    out[0] = f"{base} + {out[0]}"  # the base conv is counted with the first level
    return out + ["pool + 1x1 conv"]


def check_task(genome, data, what: str) -> None:
    """A dense genome for masks, a classifier for class folders: else a ``DataError``
    naming ``what`` (the genome or checkpoint given)."""
    from ..arch.baselines import is_dense

    dense = is_dense(genome)
    if dense != data.dense:
        labels, need = (("masks need", "a dense network (a backbone genome with task: dense, "
                         "or a U-Net such as unet_16_32_64_128_256)") if data.dense else
                        ("class folders (one class an image) need", "a classifier (task: "
                         "classify)"))
        raise DataError(f"--dataset {data.name}: {labels} {need}; {what} is "
                        f"{'dense' if dense else 'a classifier'}")


def scores(m, split: str) -> str:
    """The figures of one evaluation, for a line of output."""
    if hasattr(m, "miou"):
        return (f"{split} mIoU {m.miou:.4f} (pixel accuracy {m.acc:.4f}, mPA "
                f"{m.balanced_acc:.4f}, Dice {m.macro_f1:.4f})")
    return (f"{split} accuracy {m.acc:.4f} (balanced {m.balanced_acc:.4f}, macro F1 "
            f"{m.macro_f1:.4f})")


def unit(data) -> str:
    """What ``data``'s confusion matrices count."""
    return "pixels" if data.dense else "images"


def given(**flags):
    """The flags that were given (not None): what overrides a default kept elsewhere."""
    return {k: v for k, v in flags.items() if v is not None}


def _data_config(args: argparse.Namespace, resolution: int | None, resize: str | None = None):
    """The data of ``train`` and ``eval``; ``resize``: the mode when ``--resize`` is not
    given (eval: the checkpoint's)."""
    from ..data import Augment, DataConfig

    resize = args.resize or resize
    augment = Augment.for_dataset(args.augment, args.dataset) if getattr(args, "augment", None) \
        else None
    return DataConfig(args.dataset, resolution=resolution, train_fraction=args.train_fraction,
                      seed=args.split_seed, data_dir=args.data_dir, download=args.download,
                      augment=augment, **given(resize=resize,
                                               labels_per_class=getattr(args, "labels_per_class",
                                                                        None)))


def _default_out(prefix: str, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{prefix}-{safe_name(label) or 'run'}-{stamp}"


TRAIN_RESULTS = ("checkpoint.pt", "metrics.json")
# the training state after the last finished epoch, deleted once the results are written:
# the same command (the same --out) goes on from it
TRAIN_STATE = "train-state.pt"


def _check_no_result(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` folder that already holds a training result, unless
    ``--overwrite``: another run's checkpoint and metrics are not replaced silently."""
    found = [name for name in TRAIN_RESULTS if (out / name).exists()]
    if found and not overwrite:
        raise OptionError(f"--out {out}: already holds {' and '.join(found)} of another run; "
                          "give another --out, or --overwrite to replace them")


def _saved_train_state(out: Path, key: str, overwrite: bool) -> dict | None:
    """The state to resume from: ``--out``'s ``train-state.pt`` when it is this training's
    (whatever else ``--out`` holds: results of an earlier run of it, or a run with
    ``--overwrite`` that was interrupted). Else None, once another training's results or
    state there are refused unless ``--overwrite``."""
    from ..train.checkpoint import load_train_state

    saved = load_train_state(out / TRAIN_STATE, key)
    if saved is not None:
        return saved["train"]
    if overwrite:
        return None
    _check_no_result(out, False)
    if (out / TRAIN_STATE).exists():  # another training's, or not a state at all
        raise OptionError(f"--out {out}: holds {TRAIN_STATE}, an unfinished training with other "
                          "settings; finish it with its own command, give another --out, or "
                          "--overwrite to start this one there")
    return None


def flag_config(**fields):
    """The ``TrainConfig`` of a command's flags; a value it refuses is named by its flag
    (``--lr: 0.0 is not allowed``), as the user typed it."""
    from ..train.config import TrainConfig

    try:
        return TrainConfig(**fields)
    except TrainError as exc:
        field, _, rest = str(exc).partition(": ")
        if field not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise
        raise OptionError(f"--{field.replace('_', '-')}: {rest}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from ..analysis.confirm import recipe_of
    from ..arch.builder import build_model, resolve_genome
    from ..arch.cost import model_cost
    from ..data import load_dataset, make_loader
    from ..data.report import data_report, warnings
    from ..train.checkpoint import save_checkpoint, save_train_state
    from ..train.config import FINE_TUNING, PRETRAINED_RESOLUTION, fine_tuning
    from ..train.metrics import learnt_little
    from ..train.trainer import evaluate, resolve_device, train
    from ..weights import imagenet_normalised, parse_source, weights_file

    genome = resolve_genome(args.genome)
    label = genome.name or Path(str(args.genome)).stem
    # weights from a file or URL, or a backbone genome's own (ImageNet) weights
    pretrained = bool(args.pretrained) or getattr(genome, "pretrained", False)
    tuning = fine_tuning(args.epochs) if pretrained else {}  # the recipe; flags override
    tuning.update({k: getattr(args, k) for k in FINE_TUNING if getattr(args, k) is not None})
    cfg = flag_config(epochs=args.epochs, min_steps=args.min_steps, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, device=args.device, threads=args.threads,
                      compile=args.compile, schedule=args.schedule,
                      freeze_bn=args.freeze_bn,
                      **given(sampling=args.sampling, init=args.init), **tuning)
    out = check_out_folder(args.out) if args.out else _default_out("train", label)
    if not (out / TRAIN_STATE).exists():  # with one, decided once its settings are known
        _check_no_result(out, args.overwrite)
    # fetched and checked before the data is loaded: a missing file fails at once
    weights = weights_file(parse_source(args.pretrained, genome.name)) if args.pretrained \
        else None
    resolution = args.resolution or (PRETRAINED_RESOLUTION if pretrained else None)
    data = load_dataset(_data_config(args, resolution))
    fingerprint = data.fingerprint()  # which images each split holds, and the classes
    check_task(genome, data, f"GENOME {args.genome}")
    report = data_report(data)  # before the data moves to the device
    genome.feature_sizes(data.resolution)
    device = resolve_device(cfg.device)
    import torch

    torch.manual_seed(cfg.seed)  # the seed fixes the initial weights too
    model = build_model(genome, data.num_classes, data.in_chans,
                        pretrained=weights, **cfg.build_options)
    log = stderr_console(args.json)
    for line in warnings(report, cfg.balanced(data)):
        log.print(f"[yellow]warning[/]: {line}", highlight=False)
    extra = {}
    if model.transfer_report is not None:
        log.print(model.transfer_report.summary())
        data = imagenet_normalised(data)  # the statistics the weights were trained on
        extra["pretrained"] = {**model.transfer_report.to_record(), "normalisation": "imagenet"}
    data = data.to(device)
    cost = model_cost(model, (data.in_chans, data.resolution, data.resolution))
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "--out"):  # two trainings never write into one folder
        digest = genome.canonical_hash()
        log.print(f"[bold]{label}[/] ({digest}): {cost.params:,} params, {cost.macs:,} MACs at "
                  f"{data.resolution}px")
        epochs = cfg.epochs_for(len(data.train))
        log.print(f"{data.summary()}; {cfg.describe(data)}; device {device}; {epochs} epochs of "
                  f"{cfg.steps_per_epoch(len(data.train))} steps")
        # what must match for a saved state to be this training's: genome, recipe, data, seed
        key = json.dumps({"genome": digest, "seed": cfg.seed, "pretrained": args.pretrained,
                          "data": fingerprint, **recipe_of(cfg, data)}, sort_keys=True,
                         default=str)
        resume = _saved_train_state(out, key, args.overwrite)
        if resume is not None:
            log.print(f"resuming after epoch {resume['epoch']} ({out / TRAIN_STATE})")

        def save_state(report) -> None:
            save_train_state(out / TRAIN_STATE, key, report.state())
            on_epoch(report)

        try:
            with epoch_progress(log, epochs, args.json,
                                int(resume["epoch"]) if resume else 0) as on_epoch:
                result = train(model, data, cfg, callback=save_state, resume=resume)
        except KeyboardInterrupt:  # said on stderr with --json too
            state = out / TRAIN_STATE
            print("dla-nas train: interrupted" + (
                f": the state after the last finished epoch is in {state}; the same command "
                f"with --out {out} goes on from it" if state.exists() else ""), file=sys.stderr)
            return 130
        test_loader = make_loader(data, "test", cfg.eval_batch_size, device, train=False,
                                  seed=cfg.seed, channels_last=cfg.channels_last)
        test = evaluate(model, test_loader, data.num_classes, autocast=device.type == "cuda")
        metrics = {
            "genome": label, "hash": digest, "dataset": data.name, "resolution": data.resolution,
            "class_names": data.class_names, "params": cost.params, "macs": cost.macs,
            **result.to_dict(), **test.to_dict("test_"), **extra, "data_report": report.to_dict(),
            "train_config": dataclasses.asdict(cfg),  # every setting, defaults included
        }
        if resume is not None:
            metrics["resumed_after"] = int(resume["epoch"])
        save_checkpoint(out / "checkpoint.pt", model, cfg, data, {"metrics": metrics, **extra})
        write_file(out / "metrics.json", json.dumps(metrics, indent=2))
        (out / TRAIN_STATE).unlink(missing_ok=True)  # the results are written: spent
        if data.dense:  # a few test images with their true and predicted masks
            from ..analysis.masks import mask_examples

            mask_examples(model, data, out / "test-masks.png")
        if args.json:
            print(json.dumps(metrics))
        else:
            status = "[red]diverged[/] " + result.divergence if result.diverged else "done"
            val = f"val mIoU {result.val.miou:.4f}" if data.dense else \
                f"val acc {result.val_acc:.4f}"
            log.print(f"{status}: {val}, {scores(test, 'test')}, "
                      f"{result.train_seconds:.1f} s, {result.images_per_second:,.0f} images/s")
            masks = f", {out / 'test-masks.png'}" if data.dense else ""
            log.print(f"wrote {out / 'checkpoint.pt'}{masks} and {out / 'metrics.json'}")
        if (warning := learnt_little(test.confusion, data.class_names, unit(data))) is not None:
            log.print(f"[yellow]warning[/]: test split: {warning}", highlight=False)
        return 1 if result.diverged else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data import load_dataset, make_loader
    from ..train.checkpoint import checkpoint_model, load_checkpoint
    from ..train.metrics import learnt_little
    from ..train.trainer import evaluate, resolve_device

    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt["data"]
    args.dataset = args.dataset or meta["name"]  # by default the data it trained on
    data = load_dataset(_data_config(args, args.resolution or meta["resolution"],
                                     meta.get("resize")))
    diffs = data.differences(meta)  # class names when the checkpoint has them, else the count
    if diffs:
        raise DataError(f"--dataset {args.dataset}: not the data that {args.checkpoint} was "
                        f"trained on ({'; '.join(diffs)}); evaluate it on data with its "
                        f"{meta['num_classes']} classes and {meta['in_chans']} channel(s)")
    seen = _seen_in_training(ckpt, data, args.split)
    device = resolve_device(args.device)
    model = checkpoint_model(ckpt, args.checkpoint).to(device)
    check_task(model.genome, data, f"CHECKPOINT {args.checkpoint}")
    # normalise with the statistics the model was trained with
    data = dataclasses.replace(data, mean=tuple(meta["mean"]), std=tuple(meta["std"])).to(device)
    loader = make_loader(data, args.split, 500, device, train=False, seed=0)
    m = evaluate(model, loader, data.num_classes, autocast=device.type == "cuda")
    out = {"checkpoint": str(args.checkpoint), "dataset": data.name, "split": args.split,
           "resolution": data.resolution, **m.to_dict(),
           "images": len(getattr(data, args.split)), "images_seen_in_training": seen}
    print(json.dumps(out) if args.json else
          f"{scores(m, args.split)}, loss {m.loss:.4f}, on {len(getattr(data, args.split))} "
          f"images of {data.name}")
    if (warning := learnt_little(m.confusion, data.class_names, unit(data))) is not None:
        print(f"warning: {args.split} split: {warning}", file=sys.stderr)
    if seen:
        print(f"warning: {seen} of the {len(getattr(data, args.split))} {args.split} images "
              f"were in the train split of {args.checkpoint} (the folder changed since, or "
              "--split-seed differs): these scores flatter it", file=sys.stderr)
    return 0


def _seen_in_training(ckpt: dict, data, split: str) -> int | None:
    """How many files of ``split`` the checkpoint trained on (None where it cannot tell:
    embedded data, or a checkpoint written before it kept its files)."""
    import torch

    trained = ckpt.get("train_files")
    if not isinstance(trained, torch.Tensor) or not data.split_files(split):
        return None
    return int(torch.isin(data.file_ids(split), trained).sum())


def cmd_latency(args: argparse.Namespace) -> int:
    from ..arch.latency import measure
    from ..train.config import cpu_cores

    path = Path(args.model)
    if not path.exists():
        raise OptionError(f"MODEL {path}: no such file")
    if path.suffix.lower() != ".onnx" or not path.is_file():
        raise OptionError(f"MODEL {path}: not an .onnx file (export one with dla-nas export "
                          "RUN --onnx)")
    if args.threads > cpu_cores():  # more would time the scheduler, not the model
        raise OptionError(f"--threads: {args.threads} is not allowed (at most {cpu_cores()}, "
                          "the CPU cores this process may use)")
    try:
        import onnxruntime
    except ImportError:
        raise OptionError("latency: needs onnxruntime (pip install 'dla-nas[onnx]')") from None
    result = measure(path, args.threads, args.repeats, args.warmup)
    # the network and input it was exported for: what a search's --latency-table keys by
    props = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    known = {key: json.loads(props[key]) for key in ("hash", "input_shape") if key in props}
    print(json.dumps({"model": str(path), **known, **result.to_dict()}) if args.json else
          f"{path}: {result.median_ms:.3f} ms median at batch 1 ({result.low_ms:.3f}-"
          f"{result.high_ms:.3f} ms, 10th-90th percentile: {100 * result.spread:.1f}% of the "
          f"median), "
          f"{result.repeats} runs, {result.threads} thread(s), {result.runtime}")
    return 0


def _mask_files(root: Path, paths: list[Path], masks: Path) -> dict[str, Path]:
    """Where each image's mask goes: ``masks``/<its path under ``root``>.png. An
    ``OptionError`` for a masks folder inside ``root`` (its PNGs would be read as images, or
    replace them) and for two images whose masks would share a file."""
    if masks.resolve().is_relative_to(root.resolve()):
        raise OptionError(f"--masks {masks}: inside PATH {root} (give a folder outside it)")
    dests: dict[str, Path] = {}
    taken: dict[Path, Path] = {}
    for path in paths:
        dest = (masks / path.relative_to(root)).with_suffix(".png")
        if dest in taken:
            raise OptionError(f"--masks {masks}: {taken[dest]} and {path} would share the mask "
                              f"file {dest} (rename one of them)")
        dests[str(path)], taken[dest] = dest, path
    return dests


def cmd_predict(args: argparse.Namespace) -> int:
    from ..analysis.predict import find_images, load_predictor, predict
    from ..data.report import depth_warnings

    out = check_out_file(args.out) if args.out else None  # before any work
    masks = check_out_folder(args.masks, "--masks") if args.masks else None
    paths = find_images(args.path)
    root = Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent
    dests = _mask_files(root, paths, masks) if masks is not None else {}
    predictor = load_predictor(args.model, args.device)
    result = predict(predictor, paths, args.batch_size)
    if masks is not None and not result.dense and result.rows:
        raise OptionError(f"--masks {masks}: MODEL {args.model} gives one class an image, "
                          "not masks (a dense model does)")
    for path, reason in result.skipped:
        print(f"warning: skipping unreadable image {path}: {reason}", file=sys.stderr)
    for line in depth_warnings([str(p) for p in paths]):
        print(f"warning: {line}", file=sys.stderr)
    if not result.rows:
        raise DataError(f"PATH {args.path}: none of its {len(paths)} image file(s) could be "
                        "read")
    text = result.to_json_lines() if args.json else result.to_csv()
    if out is None:
        sys.stdout.write(text)
    else:
        write_file(out, text)
    for row in result.rows if masks is not None else []:
        row.save(dests[row.path])
    counts = ", ".join(f"{name} {n}" for name, n in result.counts(predictor.class_names).items())
    skipped = f"; skipped {len(result.skipped)} unreadable" if result.skipped else ""
    wrote = f"; wrote {out}" if out is not None else ""
    wrote += f"; wrote {len(result.rows)} mask(s) to {masks}" if masks is not None else ""
    print(f"{len(result.rows)} image(s) predicted by {predictor.path} ({predictor.kind}, "
          f"{predictor.device}): {counts}{skipped}{wrote}", file=sys.stderr)
    return 0
