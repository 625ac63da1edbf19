"""Few labels with pretrained weights: EfficientNet-Lite0 from ImageNet against the same
network from scratch and a from-scratch hand design, trained on N labelled images a class
(``--labels-per-class``), over seeds; every route read once on the test split. Prints one
JSON line per run and a summary (mean test accuracy, balanced accuracy, macro F1).

    python benchmarks/transfer.py --dataset folder:../shared/data/neu-steel --labels 10 \\
        [--resolution 96] [--seeds 0,1,2] [--steps 300] [--batch-size 16] \\
        [--val-fraction 0.05] [--threads 1] \\
        [--routes lite0-imagenet,lite0-scratch,plain_cnn]

``--labels all`` trains on the whole train split; its rows then give the largest class's
count as ``labels``, the x of the learning curve.

Routes: ``lite0-imagenet`` (``dla_nas.backbones.efficientnet_lite0`` with its ImageNet
weights, the model's own pooling and a new linear head: ``attach(..., aggregation="none")``;
ImageNet-normalised inputs; the fine-tuning recipe, backbone at 0.1x the lr after one epoch
of the head alone), ``lite0-scratch`` (the same network from PyTorch's init, the plain
recipe) and any zoo name (``plain_cnn``: the default ``train`` recipe). Grey images reach
the 3-channel stem through its weights summed over the channels, as ``--pretrained`` does.
Every route trains at least ``--steps`` optimiser steps (``min_steps``) of ``--batch-size``
and 15 epochs. With N a class an epoch is a step or a few, and the trainer evaluates the
whole val split after each: ``--val-fraction`` (default 0.05; the product's is 0.2) keeps
that from costing more than the training, and the split is the same for every route.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch
from torch import nn

from dla_nas import attach, build_model
from dla_nas.backbones import efficientnet_lite0
from dla_nas.data import DataConfig, load_dataset, make_loader
from dla_nas.train.config import FINE_TUNING, TrainConfig, frozen_epochs
from dla_nas.train.trainer import evaluate, train
from dla_nas.weights.transfer import adapt_input_channels, imagenet_normalised

FIGURES = ("test_acc", "test_balanced_acc", "test_macro_f1")


def lite0(in_chans: int, classes: int, resolution: int, pretrained: bool) -> nn.Module:
    model, taps = efficientnet_lite0(pretrained=pretrained)
    stem = model._conv_stem
    if in_chans != stem.in_channels:  # grey: the stem's weights summed over RGB
        stem.weight = nn.Parameter(adapt_input_channels(stem.weight.detach(), in_chans))
        stem.in_channels = in_chans
    return attach(model, taps, classes, aggregation="none", in_chans=in_chans,
                  input_size=resolution)


def run(route: str, data, seed: int, steps: int, batch: int, threads: int) -> dict:
    base = TrainConfig(min_steps=steps, batch_size=batch, seed=seed, threads=threads,
                       device="cpu")
    torch.manual_seed(seed)
    if route.startswith("lite0-"):
        pretrained = route == "lite0-imagenet"
        if pretrained:
            data = imagenet_normalised(data)
        model = lite0(data.in_chans, data.num_classes, data.resolution, pretrained)
        epochs = base.epochs_for(len(data.train))
        tuning = {**FINE_TUNING, "freeze_epochs": frozen_epochs(FINE_TUNING["freeze_epochs"],
                                                                epochs)} if pretrained else {}
        cfg = dataclasses.replace(base, **tuning)
    else:
        cfg = base
        model = build_model(route, data.num_classes, data.in_chans, **cfg.build_options)
    started = time.perf_counter()
    result = train(model, data, cfg)
    m = evaluate(model, make_loader(data, "test", 200, "cpu", train=False, seed=0),
                 data.num_classes)
    return {"route": route, "seed": seed, "test_acc": round(m.acc, 4),
            "test_balanced_acc": round(m.balanced_acc, 4), "test_macro_f1": round(m.macro_f1, 4),
            "val_acc": round(result.val_acc, 4), "epochs": result.epochs_run,
            "seconds": round(time.perf_counter() - started, 1)}


def labels_arg(text: str) -> int | None:
    return None if text == "all" else int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--labels", type=labels_arg, required=True,
                    help="labelled images a class, or 'all' (the whole train split)")
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--routes", default="lite0-imagenet,lite0-scratch,plain_cnn")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(args.dataset, resolution=args.resolution,
                                   labels_per_class=args.labels,
                                   val_fraction=args.val_fraction))
    # the curve's x for the whole split: its largest class, which every class has at most
    labels = args.labels or int(torch.bincount(data.train.labels).max())
    rows = []
    for route in args.routes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run(route, data, seed, args.steps, args.batch_size, args.threads))
            print(json.dumps({"data": data.name, "labels": labels, **rows[-1]}), flush=True)
    summary = {route: {k: round(statistics.mean(r[k] for r in rows if r["route"] == route), 4)
                       for k in FIGURES} for route in args.routes.split(",")}
    print(json.dumps({"benchmark": "transfer", "data": data.name, "labels": labels,
                      "all_labels": args.labels is None, "resolution": args.resolution,
                      "steps": args.steps, "batch_size": args.batch_size, "val_size": len(data.val),
                      "test_size": len(data.test),
                      "train_size": len(data.train), "summary": summary}))


if __name__ == "__main__":
    main()
