"""The multi-data yardstick: the default ``dla-nas train`` of hand designs on several data
sets, beside a plain training script on the same split (and, with ``--search``, a short
default search and the confirmation of its front), so that no default is fitted to one set.
Prints one JSON line per run and a summary (mean accuracy, balanced accuracy and macro F1
over seeds, per data set and variant).

    python benchmarks/yardstick.py --data neu-steel=folder:../shared/data/neu-steel@64 \\
        --data tiles=folder:../shared/data/magnetic-tiles@64 --data digits=digits-folder@28 \\
        [--nets plain_cnn,resnet8] [--variant shift="--augment shift"] [--seeds 0,1,2] \\
        [--threads 1] [--script] [--search 14]

``--data NAME=DATASET@RES``: what ``dla-nas train --dataset`` takes, at a resolution.
``digits-folder`` is made by the benchmark: the embedded digits written as a class-sorted
folder of 28 px PNGs, where a flip turns a 9 into a 6. ``--variant NAME="FLAGS"`` adds a
run of ``dla-nas train`` with extra flags beside the default one (``default``).
``--search N``: ``dla-nas search --space search_spaces/small-images.yaml`` with N trials and
every default, then ``dla-nas confirm --pareto`` with the seeds; the variant ``search`` holds
the confirmed candidate with the best mean val balanced accuracy (and, beside it, the best
mean test balanced accuracy of any confirmed candidate).

The plain script (``--script``) is the reference each default is held against: a plain CNN
16-32-64-128 (3x3 conv, BN, ReLU, max-pool after the first three, global average pool,
linear; 98k params), class-balanced sampling, SGD with Nesterov momentum 0.9, peak lr 0.05,
one-cycle, weight decay 5e-4, batch 32, 30 epochs, a random shift of 1/8 with reflection and
no flip, plain cross-entropy, normalised by the train split's statistics, evaluated after the
last epoch. ``script-net`` is the same network trained by the product's ``train()`` with its
defaults: the recipe's share of a gap, apart from the hand design's.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dla_nas.data import Augment, DataConfig, load_dataset, make_loader
from dla_nas.train.config import TrainConfig
from dla_nas.train.metrics import classification_metrics
from dla_nas.train.trainer import evaluate, train

FIGURES = ("test_acc", "test_balanced_acc", "test_macro_f1")
SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "small-images.yaml"


def make_digits_folder(dest: Path, side: int = 28) -> str:
    """The embedded digits as PATH/<digit>/<n>.png at ``side`` px, class-sorted."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = dest / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray((image * (255 / 16)).astype(np.uint8))
        pixels.resize((side, side), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")
    return f"folder:{dest}"


def dla_nas(*args: str) -> str:
    """Run ``dla-nas ARGS``; its standard output (a failure ends the benchmark)."""
    cmd = [sys.executable, "-m", "dla_nas.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def run_default(net: str, dataset: str, resolution: int, seed: int, flags: list[str],
                threads: int, out: Path) -> dict:
    """One ``dla-nas train NET`` with the product's defaults plus ``flags``."""
    stdout = dla_nas("train", net, "--dataset", dataset, "--resolution", str(resolution),
                     "--seed", str(seed), "--threads", str(threads), "--device", "cpu",
                     "--json", "--out", str(out), *flags)
    metrics = json.loads(stdout.strip().splitlines()[-1])
    return {k: metrics[k] for k in (*FIGURES, "test_per_class_recall", "train_seconds",
                                   "sampling")}


def plain_cnn(in_chans: int, classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (c_in, width) in enumerate(zip((in_chans, 16, 32, 64), (16, 32, 64, 128))):
        layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes))


def run_product_recipe(dataset: str, resolution: int, seed: int, threads: int) -> dict:
    """The script's network trained by the product's ``train`` with every default: what the
    recipe gives a network with the capacity the data needs."""
    torch.set_num_threads(threads)
    data = load_dataset(DataConfig(dataset, resolution=resolution))
    torch.manual_seed(seed)
    model = plain_cnn(data.in_chans, data.num_classes)
    result = train(model, data, TrainConfig(seed=seed, threads=threads, device="cpu"))
    m = evaluate(model, make_loader(data, "test", 500, "cpu", train=False, seed=0),
                 data.num_classes)
    return {"test_acc": m.acc, "test_balanced_acc": m.balanced_acc,
            "test_macro_f1": m.macro_f1, "test_per_class_recall": m.per_class_recall,
            "train_seconds": result.train_seconds, "sampling": result.sampling}


def run_script(dataset: str, resolution: int, seed: int, threads: int) -> dict:
    """The plain script on the split ``dla-nas train`` uses (split seed 0)."""
    torch.set_num_threads(threads)
    data = load_dataset(DataConfig(dataset, resolution=resolution,
                                   augment=Augment(shift=0.125)))
    torch.manual_seed(seed)
    model = plain_cnn(data.in_chans, data.num_classes)
    epochs, batch = 30, 32
    loader = make_loader(data, "train", batch, "cpu", train=True, seed=seed, balanced=True)
    steps = epochs * len(loader)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=steps)
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - started
    model.eval()
    truth, preds = [], []
    with torch.no_grad():
        for x, y in make_loader(data, "test", 500, "cpu", train=False, seed=0):
            truth.append(y)
            preds.append(model(x).argmax(1))
    m = classification_metrics(torch.cat(truth).numpy(), torch.cat(preds).numpy(),
                               data.num_classes, math.nan)
    return {"test_acc": m.acc, "test_balanced_acc": m.balanced_acc,
            "test_macro_f1": m.macro_f1, "test_per_class_recall": m.per_class_recall,
            "train_seconds": seconds, "sampling": "balanced"}


def run_search(dataset: str, resolution: int, trials: int, seeds: list[int], threads: int,
               out: Path) -> list[dict]:
    """A default search of ``trials`` trials and the confirmation of its front: one row per
    seed of the confirmed candidate with the best mean val balanced accuracy (chosen on val
    only), with the best mean test balanced accuracy over the whole front beside it."""
    dla_nas("search", "--space", str(SPACE), "--dataset", dataset, "--resolution",
            str(resolution), "--trials", str(trials), "--out", str(out))
    dla_nas("confirm", str(out), "--pareto", "--seeds", ",".join(map(str, seeds)),
            "--threads", str(threads))
    units: dict[str, list[dict]] = {}
    for line in (out / "confirm.jsonl").read_text().splitlines():
        record = json.loads(line)
        units.setdefault(record["label"], []).append(record)
    def mean(rs: list[dict], key: str) -> float:
        return statistics.mean(r[key] for r in rs)

    chosen = max(units.values(), key=lambda rs: mean(rs, "val_balanced_acc"))
    front_best = max(mean(rs, "test_balanced_acc") for rs in units.values())
    return [{**{k: r[k] for k in (*FIGURES, "test_per_class_recall", "train_seconds")},
             "sampling": r["recipe"].get("sampling", "uniform"), "seed": r["seed"],
             "net": r["label"], "macs": r["macs"],
             "front_best_test_balanced_acc": round(front_best, 4)} for r in chosen]


def parse_data(text: str, digits_dir: Path) -> tuple[str, str, int]:
    name, _, rest = text.partition("=")
    dataset, _, res = (rest or name).rpartition("@")
    if not res.isdigit() or not dataset:
        raise SystemExit(f"--data: {text!r} is not allowed (NAME=DATASET@RESOLUTION)")
    if dataset == "digits-folder":
        dataset = make_digits_folder(digits_dir)
    return name, dataset, int(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DATASET@RES")
    ap.add_argument("--nets", default="plain_cnn", help="hand designs, comma-separated")
    ap.add_argument("--variant", action="append", default=[], metavar='NAME="FLAGS"')
    ap.add_argument("--no-default", action="store_true", help="run the variants only")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--script", action="store_true",
                    help="run the plain script as well, and its network with the product's "
                         "train() and defaults (script-net)")
    ap.add_argument("--search", type=int, default=0, metavar="TRIALS",
                    help="a default search of this many trials, and confirm --pareto")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = ({} if args.no_default else {"default": []}) | {
        v.partition("=")[0]: shlex.split(v.partition("=")[2]) for v in args.variant}
    rows = []

    def emit(row: dict) -> None:
        row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        row["test_per_class_recall"] = [r if r is None else round(r, 3)
                                        for r in row["test_per_class_recall"]]
        rows.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        sets = [parse_data(d, Path(tmp) / "digits") for d in args.data]
        for name, dataset, res in sets:
            where = {"data": name, "resolution": res}
            for net in args.nets.split(","):
                for variant, flags in variants.items():
                    for seed in seeds:
                        out = Path(tmp) / f"{name}-{net}-{variant}-{seed}"
                        emit({**where, "net": net, "variant": variant, "seed": seed,
                              **run_default(net, dataset, res, seed, flags, args.threads, out)})
            if args.script:
                for variant, run in (("script", run_script), ("script-net", run_product_recipe)):
                    for seed in seeds:
                        emit({**where, "net": "script", "variant": variant, "seed": seed,
                              **run(dataset, res, seed, args.threads)})
            if args.search:
                for row in run_search(dataset, res, args.search, seeds, args.threads,
                                      Path(tmp) / f"{name}-search"):
                    emit({**where, "variant": "search", **row})
    summary = {}
    for row in rows:
        key = row["variant"] if row["net"] == "script" or row["variant"] == "search" else \
            f"{row['net']} {row['variant']}"
        summary.setdefault(row["data"], {}).setdefault(key, []).append(row)
    print(json.dumps({"benchmark": "yardstick", "seeds": seeds, "summary": {
        data: {key: {k: round(statistics.mean(r[k] for r in runs), 4) for k in FIGURES}
               for key, runs in by_key.items()}
        for data, by_key in summary.items()}}))


if __name__ == "__main__":
    main()
