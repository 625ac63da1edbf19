"""Is ``latency_ms`` repeatable? The same exported graphs measured ``--runs`` times by
``dla_nas.arch.latency.measure`` (ONNX Runtime, batch 1, a pinned child process each time);
prints JSON: per network its MACs, the runs' medians, and their coefficient of variation
(standard deviation / mean; issue 27's target: under 5% over 5 runs).

    python benchmarks/latency_repeat.py [--runs 5] [--threads 1] [--resolution 64]
        [--nets plain_cnn,resnet20,dla34_cifar_x0.25]

Run it on an otherwise idle machine: a process sharing the pinned core is what it detects.
"""

from __future__ import annotations

import argparse
import json
import statistics

from dla_nas import build_model
from dla_nas.arch.cost import model_cost
from dla_nas.arch.latency import measure, onnx_graph


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--nets", default="plain_cnn,resnet20,dla34_cifar_x0.25")
    args = ap.parse_args()
    shape = (3, args.resolution, args.resolution)
    rows = []
    for name in args.nets.split(","):
        model = build_model(name, num_classes=10, in_chans=3)
        graph = onnx_graph(model, shape)
        medians = [measure(graph, args.threads).median_ms for _ in range(args.runs)]
        mean = statistics.fmean(medians)
        rows.append({"net": name, "macs": model_cost(model, shape).macs,
                     "medians_ms": [round(m, 4) for m in medians],
                     "cv": round(statistics.pstdev(medians) / mean, 4)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "latency_repeat", "runs": args.runs, "threads": args.threads,
                      "input": list(shape), "worst_cv": max(r["cv"] for r in rows)}))


if __name__ == "__main__":
    main()
