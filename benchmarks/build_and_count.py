"""Build time and cost-count time (fvcore) for every official DLA variant; prints JSON.

    python benchmarks/build_and_count.py [--input 3x224x224] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from dla_nas import build_model
from dla_nas.arch import zoo
from dla_nas.arch.cost import model_cost
from dla_nas.cli.parser import parse_input_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=parse_input_shape, default=(3, 224, 224))
    parser.add_argument("--repeat", type=int, default=3, help="timings are the best of N")
    args = parser.parse_args()
    rows = []
    for name in zoo.official_names():
        build_s, count_s = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            model = build_model(name, num_classes=1000)
            t1 = time.perf_counter()
            cost = model_cost(model, args.input)
            t2 = time.perf_counter()
            build_s.append(t1 - t0)
            count_s.append(t2 - t1)
        rows.append({"name": name, "params": cost.params, "macs": cost.macs,
                     "build_s": round(min(build_s), 4), "count_s": round(min(count_s), 4)})
    print(json.dumps({
        "benchmark": "build_and_count",
        "input": list(args.input),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "variants": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
