"""Does a searched DLA beat the plain CNN once seed noise is counted? Prints JSON.

Trains each candidate with the space's task and proxy settings under several training seeds
(the data split stays fixed) and reports MACs, params, and the mean, spread and values of the
validation and test accuracies. Candidates are a run's Pareto front (``--run``) and/or names:
zoo genomes, baselines such as ``plain_cnn``, or genome/exported YAML files.

    python benchmarks/seeds_vs_plain.py --run results/reference-digits-tiny \\
        --names plain_cnn,plain_cnn_8_16_32 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from dla_nas import Genome, build_model
from dla_nas.baselines import build_baseline, is_baseline
from dla_nas.cost import model_cost
from dla_nas.data import make_loader
from dla_nas.pareto import front
from dla_nas.proxy import ProxyEvaluator
from dla_nas.results import RunStore, load_run
from dla_nas.space import SearchSpace
from dla_nas.training import evaluate, train


def candidates(args: argparse.Namespace) -> tuple[SearchSpace, dict[str, Genome | str]]:
    """The space to train under and the candidates by label (a genome, or a baseline name)."""
    out: dict[str, Genome | str] = {}
    space_path = args.space
    if args.run:
        info = RunStore(args.run).info()
        space_path = space_path or info["space_path"]
        objectives = [tuple(o) for o in info["objectives"]]
        for r in front(load_run(args.run), objectives):
            out[f"trial {r.trial} ({r.hash})"] = Genome.from_dict(r.genome)
    for name in filter(None, args.names.split(",")):
        out[name] = name  # a baseline name, or what build_model takes (zoo name, YAML path)
    return SearchSpace.from_yaml(space_path or "search_spaces/digits-tiny.yaml"), out


def make(evaluator: ProxyEvaluator, what: Genome | str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    data, zero = evaluator.data, evaluator.train_config.zero_init_residual
    if isinstance(what, str) and is_baseline(what):
        return build_baseline(what, data.num_classes, data.in_chans, zero_init_residual=zero)
    return build_model(what, data.num_classes, data.in_chans, zero_init_residual=zero)


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "min": min(values), "max": max(values),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "values": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=None, help="a run folder: its Pareto front is compared")
    ap.add_argument("--names", default="plain_cnn",
                    help="comma-separated zoo/baseline names or YAML paths (default plain_cnn)")
    ap.add_argument("--space", default=None,
                    help="space whose task and proxy to use (default: the run's, else digits-tiny)")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    space, todo = candidates(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    evaluator = ProxyEvaluator(space, "auto", args.threads)
    data, device = evaluator.data, evaluator.device
    test = make_loader(data, "test", evaluator.train_config.eval_batch_size, device,
                       train=False, seed=0)
    rows = []
    for label, what in todo.items():
        val, tst, seconds, cost = [], [], 0.0, None
        for seed in seeds:
            model = make(evaluator, what, seed)
            cost = cost or model_cost(model, evaluator.input_shape)  # the same for every seed
            started = time.perf_counter()
            result = train(model, data, replace(evaluator.train_config, seed=seed))
            seconds += time.perf_counter() - started
            val.append(round(result.val_acc, 4))
            tst.append(round(evaluate(model, test, data.num_classes,
                                        autocast=device.type == "cuda").acc, 4))
        rows.append({"candidate": label, "macs": int(cost.macs), "params": int(cost.params),
                     "val_acc": summary(val), "test_acc": summary(tst),
                     "train_seconds_per_seed": round(seconds / len(seeds), 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"space": space.path, "resolution": data.resolution,
                      "epochs": evaluator.train_config.epochs, "seeds": seeds,
                      "device": str(device), "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
