"""What int8 costs and buys: each trained network exported as float and int8 ONNX
(``dla-nas export --onnx --weights --int8``), both read once on the test split by ONNX
Runtime, and both timed at batch 1 (``dla_nas.arch.latency``). Prints one JSON line per
network (test accuracy, balanced accuracy, the int8 drop, float and int8 median latency and
their ratio) and a summary.

    python benchmarks/int8.py TRAIN_FOLDER [TRAIN_FOLDER ...] [--threads 1] [--out DIR]

Each TRAIN_FOLDER is the output of ``dla-nas train`` (its checkpoint's data is read again,
with the split seed 0 of the default ``train``). For a run's front: ``dla-nas export RUN
--pareto`` and ``dla-nas train`` each config, then pass those folders.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from dla_nas.analysis.export import export_training
from dla_nas.analysis.predict import load_predictor
from dla_nas.arch.latency import measure
from dla_nas.data import DataConfig, load_dataset
from dla_nas.train.checkpoint import load_checkpoint
from dla_nas.train.metrics import classification_metrics


def test_scores(graph: Path, images: torch.Tensor, labels: np.ndarray, classes: int) -> dict:
    """Accuracy, balanced accuracy and macro F1 of an ONNX graph on the test images."""
    predictor = load_predictor(graph)
    pre = predictor.preprocessing
    predicted = torch.cat([predictor.forward(pre.normalise(images[i:i + 256])).argmax(1)
                           for i in range(0, len(images), 256)]).numpy()
    m = classification_metrics(labels, predicted, classes, 0.0)
    return {"acc": round(m.acc, 4), "balanced_acc": round(m.balanced_acc, 4),
            "macro_f1": round(m.macro_f1, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="dla-nas train output folders")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="keep the exports here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, folder in enumerate(args.folders):
            out = (args.out or Path(scratch)) / f"{i}-{folder.name}"
            paths = export_training(folder, out, onnx=True, weights=True, int8=True)
            int8 = next(p for p in paths if p.name.endswith(".int8.onnx"))
            fp32 = next(p for p in paths if p.suffix == ".onnx" and p != int8)
            meta = load_checkpoint(folder / "checkpoint.pt")["data"]
            data = load_dataset(DataConfig(meta["name"], resolution=meta["resolution"],
                                           resize=meta.get("resize", "squash")))
            labels = data.test.labels.numpy()
            scores = {kind: test_scores(g, data.test.images, labels, data.num_classes)
                      for kind, g in (("float", fp32), ("int8", int8))}
            times = {kind: measure(g, args.threads).median_ms
                     for kind, g in (("float", fp32), ("int8", int8))}
            rows.append({"network": folder.name, "test": scores,
                         "acc_drop": round(scores["float"]["acc"] - scores["int8"]["acc"], 4),
                         "latency_ms": {k: round(v, 4) for k, v in times.items()},
                         "speedup": round(times["float"] / times["int8"], 3)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "int8", "threads": args.threads, "networks": len(rows),
                      "mean_acc_drop": round(statistics.fmean(r["acc_drop"] for r in rows), 4),
                      "mean_speedup": round(statistics.fmean(r["speedup"] for r in rows), 3)}))


if __name__ == "__main__":
    main()
