"""The argument parser of ``dla-nas``: every command, its flags and their checks."""

from __future__ import annotations

import argparse
import re
from typing import Callable, NoReturn

from .. import __version__
from ..analysis.ablation import BY
from ..arch.genome import INITS, MAX_INPUT
from ..checks import MAX_SEED
from ..data.config import IMAGE_EXTENSIONS, IMBALANCE_RATIO, RESIZE_MODES, SAMPLINGS
from ..train.config import FINE_TUNING, TrainConfig
from .data_cmds import cmd_data
from .model_cmds import cmd_eval, cmd_latency, cmd_predict, cmd_show, cmd_train
from .run_cmds import cmd_export, cmd_pareto, cmd_status
from .search_cmds import cmd_confirm, cmd_search

TRAIN_DEFAULTS = TrainConfig()  # the recipe of `train` and `confirm`


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE``, and exit
    status 2, like every other bad input; ``--help`` still prints the usage. Subparsers
    inherit the class."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (\S+?): ", r"\1: ", message)  # "--trials: ..."
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A flag type: an integer from ``low`` to ``high`` (no upper bound when None)."""
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed ({allowed})")
        return value
    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


positive_int = int_range(1)
# an image side: the largest input a network is counted or built for (genome.MAX_INPUT)
resolution_px = int_range(1, MAX_INPUT)
seed_int = int_range(0, MAX_SEED)


def comma_list(text: str) -> list[str]:
    """``a, b`` -> ["a", "b"] ('' -> []); an empty item (``0,,1``, ``a,``) is a slip: refused."""
    items = [t.strip() for t in text.split(",")]
    if text.strip() and not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (an empty item between "
                                         "commas)")
    return [t for t in items if t]


def int_list(text: str, high: int | None = None) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]: integers >= 0 (and at most ``high``), repeats dropped."""
    try:
        values = [int(t) for t in comma_list(text)]
    except ValueError:
        values = []
    if not values or min(values) < 0 or (high is not None and max(values) > high):
        bound = f"integers from 0 to {high}" if high is not None else "integers >= 0"
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed ({bound} such as 0,1,2)")
    return list(dict.fromkeys(values))


def seed_list(text: str) -> list[int]:
    return int_list(text, MAX_SEED)


def gpu_list(text: str) -> list[int]:
    try:
        gpus = [int(t) for t in comma_list(text)]
    except ValueError:
        gpus = []
    if not gpus:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (GPU indices such as 0,1)")
    return gpus


def add_source_args(p: argparse.ArgumentParser, resolution_help: str) -> None:
    """Where the data is, its image size and its split: what loading a dataset needs."""
    p.add_argument("--data-dir", default=None,
                   help="where CIFAR archives or folders are (default ~/.cache/dla-nas/data)")
    p.add_argument("--download", action="store_true",
                   help="download the CIFAR archive when it is not in --data-dir")
    p.add_argument("--resolution", type=resolution_px, default=None, help=resolution_help)
    p.add_argument("--split-seed", type=seed_int, default=0,
                   help="seed of the train/val/test split (default 0; fixed across runs)")
    add_resize_arg(p, "squash; eval: the checkpoint's")


def add_resize_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--resize", choices=RESIZE_MODES, default=None,
                   help="how a folder's images that are not square become square: squash "
                        "(stretch), pad (fit the longer side and mirror the image into the "
                        "rest: shapes keep their aspect ratio) or crop (fit the shorter side, "
                        f"keep the centre); default {default}")


def add_sampling_args(p: argparse.ArgumentParser, augment_default: str,
                      sampling_default: str) -> None:
    """How a network sees the data: augmentation and class balance."""
    p.add_argument("--augment", default=None, metavar="NAME|LIST",
                   help="textures (both flips and a shift: surfaces that read the same "
                        "mirrored), objects (left-right flip and a shift: photos of things), "
                        "shift (no flip: digits, text, oriented parts), none, or a comma list "
                        f"of hflip, vflip, shift; default {augment_default}")
    p.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="how batches are drawn: balanced (every class equally often), "
                        "uniform (every image equally often) or auto (balanced when the "
                        f"largest train class has over {IMBALANCE_RATIO:g}x the images of the "
                        f"smallest); default {sampling_default}")


def add_labels_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--labels-per-class", type=positive_int, default=None, metavar="N",
                   help="few labels: train on a seeded, stratified subset of the train split "
                        "with N images a class (val and test unchanged); default "
                        f"{default}")


def add_data_args(p: argparse.ArgumentParser, resolution_help: str,
                  dataset: str | None = "digits") -> None:
    """Which data, at which size; ``dataset``: the default (None: the command's own)."""
    shown = "digits (embedded, default)" if dataset == "digits" else "digits (embedded)"
    p.add_argument("--dataset", default=dataset, metavar="NAME",
                   help=f"{shown}, cifar10, cifar100, folder:PATH "
                        "(PATH/<class>/*.png|jpg, or PATH/{train,val,test}/<class>/) or seg:PATH "
                        "(PATH/images and PATH/masks, "
                        "or PATH/{train,val,test}/{images,masks}: a dense task)"
                        + ("" if dataset else "; default: the data the checkpoint trained on"))
    add_source_args(p, resolution_help)
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="stratified fraction of the train split to use (default 1.0)")
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
    add_sampling_args(p, "the search's for confirm, else by dataset: digits and folders "
                         "shift, CIFAR objects",
                      f"the search's for confirm, else {TRAIN_DEFAULTS.sampling}")
    p.add_argument("--init", choices=INITS, default=None,
                   help="how the weights start: torch (PyTorch's layer defaults) or official "
                        f"(the DLA reference's); default the search's for confirm, else "
                        f"{TRAIN_DEFAULTS.init}")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    show.add_argument("--input", type=parse_input_shape, default=None, metavar="CxHxW",
                      help="input shape (default: an exported config's own, else 3x224x224; "
                           "N means 3xNxN)")
    show.add_argument("--classes", type=positive_int, default=None,
                      help="number of output classes (default: an exported config's own, "
                           "else 1000)")
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
    add_data_args(tr, "image size in px (default: the dataset's own: 8 for digits, 32 for "
                      "CIFAR and folders, 64 for seg; 224 for ImageNet weights)")
    add_labels_arg(tr, "all")
    add_recipe_args(tr)
    tr.add_argument("--pretrained", default=None, metavar="SOURCE",
                    help="start from ImageNet weights: official (the DLA authors' file for "
                         "this network), official:NAME, timm, timm:NAME, a URL or a file. "
                         "Tensors load by module path and shape (a new head for your "
                         "classes); downloads are sha256-checked and cached in "
                         "$DLA_NAS_CACHE/weights (default ~/.cache/dla-nas/weights). Inputs "
                         "are then ImageNet-normalised, at 224 px unless --resolution, and "
                         "the fine-tuning recipe below applies")
    tr.add_argument("--backbone-lr-mult", type=float, default=None, metavar="M",
                    help="the backbone's learning rate as a fraction of --lr, the head's "
                         f"(default {FINE_TUNING['backbone_lr_mult']} with --pretrained or a backbone "
                         "genome's ImageNet weights, else 1)")
    tr.add_argument("--freeze-epochs", type=int, default=None, metavar="N",
                    help="train the head alone for the first N epochs (default "
                         f"{FINE_TUNING['freeze_epochs']} with --pretrained or a backbone genome's "
                         "ImageNet weights, else 0)")
    tr.add_argument("--freeze-bn", action="store_true",
                    help="keep the BN statistics as loaded: no update while training and no "
                         "re-estimation before evaluation")
    tr.add_argument("--schedule", choices=["onecycle", "cosine"], default="onecycle",
                    help="onecycle: 1 warm-up epoch then cosine (default); cosine: no warm-up")
    tr.add_argument("--seed", type=seed_int, default=0, help="training seed (default 0)")
    tr.add_argument("--compile", action="store_true", help="use torch.compile (off by default)")
    tr.add_argument("--out", default=None,
                    help="output folder (default results/train-<name>-<time>)")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace the checkpoint.pt and metrics.json that --out already holds "
                         "(without it, such a folder is refused)")
    tr.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    tr.set_defaults(func=cmd_train)

    da = sub.add_parser(
        "data", help="report a dataset: class counts per split, image sizes, duplicates",
        description="Load a dataset as train and search would, and report what it holds: "
                    "images per class in train/val/test, the imbalance ratio, image sizes, "
                    "aspect ratios, modes and formats on disk (folders), and images whose "
                    "content appears in train and in val/test; then the warnings these call "
                    "for, each naming the option that addresses it.",
    )
    da.add_argument("dataset", metavar="DATASET",
                    help="digits, cifar10, cifar100, folder:PATH (PATH/<class>/*.png|jpg) or "
                         "seg:PATH (images with masks)")
    add_source_args(da, "image size in px the report judges against (default: the dataset's "
                        "own, 8 for digits, 32 for CIFAR and folders, 64 for seg)")
    add_sampling_args(da, "as train's: by dataset, digits and folders shift, CIFAR objects",
                      TRAIN_DEFAULTS.sampling)
    da.add_argument("--json", action="store_true",
                    help="print the report and its warnings as one JSON object")
    da.set_defaults(func=cmd_data, train_fraction=1.0)

    ev = sub.add_parser(
        "eval", help="re-evaluate a saved checkpoint",
        description="Evaluate a checkpoint.pt written by 'dla-nas train' on a dataset split. "
                    "The file is read with torch.load(weights_only=True): no code in it runs.",
    )
    ev.add_argument("checkpoint", metavar="CHECKPOINT", help="path to checkpoint.pt")
    add_data_args(ev, "image size in px (default: the checkpoint's)", dataset=None)
    ev.add_argument("--split", choices=["test", "val"], default="test", help="default test")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser(
        "predict", help="predict the classes of image files with a trained network",
        description="Predict the class of each image file with a trained network, the files "
                    "preprocessed exactly as its training and evaluation data were (channels, "
                    "size, resize mode, mean and std travel with the model). Prints CSV "
                    "(path,class,confidence; confidence: the softmax probability of the "
                    "predicted class) or, with --json, one JSON object per line; a summary "
                    "goes to stderr. Unreadable files are skipped with a warning. A dense "
                    "(segmentation) model gives each class's share of the pixels, and its "
                    "masks with --masks.",
    )
    pr.add_argument("model", metavar="MODEL",
                    help="a `dla-nas train` folder or its checkpoint.pt; a config exported "
                         "with `dla-nas export ... --weights` (.yaml, its .safetensors "
                         "beside it); or an .onnx file from `dla-nas export ... --onnx` (run "
                         "with onnxruntime on the CPU: pip install 'dla-nas[onnx]')")
    pr.add_argument("path", metavar="PATH",
                    help="an image file, or a folder searched at any depth for "
                         f"{', '.join(IMAGE_EXTENSIONS)} files (hidden ones left out), "
                         "predicted in order of path")
    pr.add_argument("--out", default=None, metavar="FILE",
                    help="write the predictions to FILE (e.g. predictions.csv) instead of "
                         "stdout")
    pr.add_argument("--json", action="store_true",
                    help="one JSON object per line (path, class, confidence) instead of CSV")
    pr.add_argument("--masks", default=None, metavar="FOLDER",
                    help="a dense model: write each image's mask to FOLDER (a PNG of class "
                         "indices at the image's size, named by its path under PATH); its "
                         "CSV gives each class's share of the pixels")
    pr.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                    help="images decoded and predicted at a time (default 64)")
    pr.add_argument("--device", default="auto",
                    help="cpu, cuda, cuda:N or auto (default); an .onnx model runs on the CPU")
    pr.set_defaults(func=cmd_predict)

    la = sub.add_parser(
        "latency", help="measure an exported model's latency with ONNX Runtime (CPU, batch 1)",
        description="Time an .onnx file from `dla-nas export --onnx` at batch 1 with ONNX "
                    "Runtime's CPU execution provider, in a child process pinned to --threads "
                    "CPUs: warm-up runs, then --repeats timed runs; prints the median and the "
                    "10th and 90th percentiles. Run it on the "
                    "machine the model will be deployed to: that is the latency the line "
                    "feels. Needs onnxruntime (pip install 'dla-nas[onnx]').",
    )
    la.add_argument("model", metavar="MODEL.onnx", help="an .onnx file from dla-nas export")
    la.add_argument("--threads", type=positive_int, default=1, metavar="N",
                    help="CPU threads (and pinned CPUs) the runtime gets (default 1)")
    la.add_argument("--repeats", type=positive_int, default=50, metavar="N",
                    help="timed runs (default 50; at least 2)")
    la.add_argument("--warmup", type=int, default=10, metavar="N",
                    help="untimed runs first (default 10)")
    la.add_argument("--json", action="store_true",
                    help="print the figures as JSON, with the network's hash and input shape: "
                         "lines that `dla-nas search --latency-table FILE` reads")
    la.set_defaults(func=cmd_latency)

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
                    help="default tpe with the optuna backend; with ray, nsga2 for several "
                         "objectives and tpe for one (a resumed run keeps its own)")
    se.add_argument("--seed", type=seed_int, default=0, help="sampler seed (default 0)")
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
    se.add_argument("--latency-threads", type=positive_int, default=1, metavar="N",
                    help="where the space has a latency objective or constraint: the CPU "
                         "threads (pinned CPUs) ONNX Runtime gets when a trial's exported "
                         "graph is timed at batch 1 (default 1; say what the deployed "
                         "machine gives the model)")
    se.add_argument("--latency-table", default=None, metavar="FILE",
                    help="latencies measured on the target machine (the JSON lines of "
                         "`dla-nas latency EXPORT.onnx --json`): a trial whose network and "
                         "input are in it takes that figure instead of one measured here")
    se.add_argument("--early-stopping", choices=["pareto", "asha", "none"], default=None,
                    help="stop weak trials at a rung (half the proxy's epochs): pareto "
                         "keeps a trial on the front of accuracy and cost there or in its "
                         "top third (default, both backends); asha (ray only) ranks on "
                         "accuracy alone; none trains every trial fully (a resumed run "
                         "keeps its own)")
    se.add_argument("--warm-start", choices=["baselines", "none"], default=None,
                    help="baselines: a new run's first trials are the space's hand designs "
                         "(its baselines: list), so the sampler starts from known-good "
                         "networks and the front shows which searched ones beat them "
                         "(default, except with nsga2, whose first generation they would "
                         "crowd); none: the sampler's own draws from the start")
    se.add_argument("--enqueue", action="append", default=[], metavar="GENOME",
                    help="a network to try, new run (first) or resumed (after what the "
                         "study holds queued): a genome or exported YAML, or a zoo name, that "
                         "the space can draw (Optuna's enqueue_trial); it gets the nominal "
                         "training settings and is tried once (repeat the flag for more)")
    se.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="stop after this many seconds: no new trial starts, and a running "
                         "one ends after its epoch, unrecorded (the same command draws it "
                         "again)")
    se.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    se.add_argument("--baselines", type=comma_list, default=[], metavar="NAMES",
                    help="comma-separated networks trained with the same proxy for comparison: "
                         "plain_cnn, plain_cnn_8_16_32, resnet8/14/20, zoo names such as "
                         "dla46_c_cifar, or narrowed ones such as dla34_cifar_x0.25")
    se.add_argument("--data-dir", default=None, help="where CIFAR archives or folders are")
    se.add_argument("--dataset", default=None, metavar="NAME",
                    help="search on this data instead of the space's task.dataset: digits, "
                         "cifar10, cifar100 or folder:PATH (PATH/<class>/*.png|jpg)")
    se.add_argument("--resolution", type=resolution_px, default=None, metavar="PX",
                    help="image size instead of the space's task.resolution")
    add_sampling_args(se, "the space's task.augment, else by dataset",
                      f"the space's proxy.sampling, else {TRAIN_DEFAULTS.sampling}")
    add_resize_arg(se, "the space's task.resize, else squash")
    add_labels_arg(se, "the space's task.labels_per_class, else all")
    se.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                    help="ray: join this cluster (default: start a local Ray, loopback only, "
                         "no dashboard)")
    se.add_argument("--gpus-per-trial", type=float, default=None, metavar="G",
                    help="ray: GPUs per trial, fractions such as 0.5 pack trials (default 0)")
    se.add_argument("--cpus-per-trial", type=float, default=None, metavar="C",
                    help="ray: CPUs per trial (default 1)")
    se.add_argument("--scheduler", choices=["pareto", "asha", "none"], default=None,
                    help="deprecated: the old name of --early-stopping")
    se.set_defaults(func=cmd_search)

    co = sub.add_parser(
        "confirm", help="retrain chosen trials and baselines with several seeds; test once",
        description="Retrain chosen trials of a run and hand-designed baselines with several "
                    "seeds, each with the same full recipe, and evaluate each once on the test "
                    "split, which the search never saw. Results go to RUN/confirm.jsonl, one "
                    "line per finished (candidate, seed); running the same command again "
                    "continues and retrains nothing that finished. A trial trains with the "
                    "settings it drew (resolution, lr, weight decay, augmentation, backbone lr "
                    "and frozen epochs, where searched); the options below give the rest. "
                    "`status`, `pareto` and `export` show the confirmed figures.",
    )
    co.add_argument("run", metavar="RUN", help="a run folder, e.g. results/demo")
    co.add_argument("--pareto", action="store_true", help="every trial on the Pareto front")
    co.add_argument("--top", type=positive_int, default=None, metavar="K",
                    help="the K best trials by the run's accuracy objective")
    co.add_argument("--trial", type=int_list, default=[], metavar="N,...",
                    help="these trial numbers")
    co.add_argument("--baselines", type=comma_list, default=[], metavar="NAMES",
                    help="hand designs trained alongside: 'line' (plain_cnn at three widths, "
                         "resnet8/14/20, dla34_cifar_x0.25, dla46_c_cifar; for masks U-Nets: "
                         "unet_8_16_32_64_128, unet_16_32_64_128_256 and the standard unet) "
                         "or names")
    co.add_argument("--seeds", type=seed_list, default=[0, 1, 2], metavar="S,...",
                    help="training seeds (default 0,1,2)")
    add_recipe_args(co)
    add_labels_arg(co, "the search's")
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
                    "and an interactive pareto.html, and print each run's front. A run with "
                    "confirm.jsonl also gets its confirmed points (mean test accuracy, min-max "
                    "bars), the confirmed front and the hand-designed line (its confirmed "
                    "baselines joined in order of cost).",
    )
    pa.add_argument("runs", nargs="+", metavar="RUN", help="run folders, e.g. results/demo")
    pa.add_argument("--x", default="macs", choices=["macs", "params", "latency_ms"],
                    help="cost axis (default macs, log scale)")
    pa.add_argument("--y", default=None, choices=["val_acc", "val_balanced_acc", "val_miou"],
                    help="accuracy axis (default: the run's accuracy objective)")
    pa.add_argument("--out", default=None, metavar="DIR",
                    help="output folder (default: the first run's folder)")
    pa.add_argument("--by", default=None, choices=BY,
                    help="colour the search trials by a genome property: aggregation (tree, "
                         "none or mixed stages), block, or ida (IDA edges, level_root only, no "
                         "IDA); with several runs, each run gets its own marker")
    pa.set_defaults(func=cmd_pareto)

    ex = sub.add_parser(
        "export", help="write chosen trials (or a trained network) as model configs (YAML, "
                       "optional weights and ONNX)",
        description="Write one YAML model config per chosen trial of a search run: the genome "
                    "plus metadata (run, trial, hash, dataset, fidelity, objective values, "
                    "params and MACs). Each config is rebuilt and checked against the run's "
                    "params and MACs. A `dla-nas train` folder exports its one network, with no "
                    "selector.",
    )
    ex.add_argument("run", metavar="RUN",
                    help="a search run folder (e.g. results/demo), or a `dla-nas train` folder")
    pick = ex.add_mutually_exclusive_group()
    pick.add_argument("--pareto", action="store_true", help="every trial on the Pareto front")
    pick.add_argument("--trial", type=int, default=None, metavar="N", help="trial number N")
    pick.add_argument("--best", default=None, metavar="OBJECTIVE",
                      help="the best trial for one objective, e.g. val_acc")
    pick.add_argument("--knee", action="store_true", help="the knee of the front")
    ex.add_argument("--onnx", action="store_true",
                    help="also export ONNX graphs (needs pip install 'dla-nas[onnx]')")
    ex.add_argument("--int8", action="store_true",
                    help="also an int8 ONNX graph (<config>.int8.onnx) of the trained "
                         "weights, by ONNX Runtime's static quantisation calibrated on 128 "
                         "training images; needs --onnx and --weights")
    ex.add_argument("--weights", action="store_true",
                    help="also write the trained weights beside each config "
                         "(<config>.safetensors): for a search run from `dla-nas confirm`, the "
                         "seed with the best val accuracy; for a train folder, its checkpoint")
    ex.add_argument("--out", default=None, metavar="DIR", help="default RUN/export")
    ex.set_defaults(func=cmd_export)
    return parser
