"""Imbalanced inspection data: uniform and class-balanced batches on a subset where one class
dominates. Prints JSON (test accuracy, balanced accuracy, macro F1, per-class recall).

The subset is made of links into a folder dataset: ``--major`` keeps ``--major-count``
images, every other class ``--minor-count`` (the first files of each class in sorted order).

    python benchmarks/imbalance.py --source ../shared/data/neu-steel --major crazing \
        [--major-count 300] [--minor-count 30] [--resolution 64] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from dla_nas import build_model
from dla_nas.data import IMAGE_EXTENSIONS, DataConfig, load_dataset, make_loader
from dla_nas.train.config import TrainConfig
from dla_nas.train.trainer import evaluate, train


def make_subset(source: Path, dest: Path, major: str, major_count: int, minor_count: int) -> None:
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        keep = major_count if folder.name == major else minor_count
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        (dest / folder.name).mkdir(parents=True)
        for f in files[:keep]:
            (dest / folder.name / f.name).symlink_to(f.resolve())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--major", required=True)
    ap.add_argument("--major-count", type=int, default=300)
    ap.add_argument("--minor-count", type=int, default=30)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--net", default="plain_cnn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        make_subset(Path(args.source), Path(tmp), args.major, args.major_count, args.minor_count)
        data = load_dataset(DataConfig(f"folder:{tmp}", resolution=args.resolution))
    test = make_loader(data, "test", 500, "cpu", train=False, seed=0)
    base = TrainConfig(min_steps=1000, device="cpu", threads=args.threads)
    rows = []
    for sampling in ("uniform", "balanced"):
        for seed in seeds:
            torch.manual_seed(seed)
            model = build_model(args.net, data.num_classes, data.in_chans, **base.build_options)
            started = time.perf_counter()
            result = train(model, data, dataclasses.replace(base, seed=seed, sampling=sampling))
            m = evaluate(model, test, data.num_classes)
            rows.append({"sampling": sampling, "seed": seed, "test_acc": round(m.acc, 4),
                         "test_balanced_acc": round(m.balanced_acc, 4),
                         "test_macro_f1": round(m.macro_f1, 4),
                         "test_per_class_recall": [round(r, 3) for r in m.per_class_recall],
                         "val_balanced_acc": round(result.val.balanced_acc, 4),
                         "seconds": round(time.perf_counter() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for sampling in ("uniform", "balanced"):
        mine = [r for r in rows if r["sampling"] == sampling]
        summary[sampling] = {
            k: round(sum(r[k] for r in mine) / len(mine), 4)
            for k in ("test_acc", "test_balanced_acc", "test_macro_f1")}
    print(json.dumps({"benchmark": "imbalance", "net": args.net, "classes": data.class_names,
                      "train_counts": torch.bincount(data.train.labels).tolist(),
                      "test_counts": torch.bincount(data.test.labels).tolist(),
                      "resolution": data.resolution, "seeds": seeds, "summary": summary}))


if __name__ == "__main__":
    main()
