"""Does a short proxy rank architectures as a longer schedule would? Prints JSON.

For each initialisation (official, or zero-init of the last BN of every residual branch) and
each BN recalibration setting (batches of shuffled train images that re-estimate the BN
statistics before every evaluation; 0: the running statistics) it trains a handful of zoo
and small genomes with a short and a long schedule, and reports the rank agreement (Kendall
tau, Spearman rho) of their validation accuracies, plus the first-epoch training loss (the
official init starts deep nets at a high loss).

    python benchmarks/proxy_ranking.py [--short 3] [--long 15] [--resolution 16]
        [--dataset digits|folder:PATH] [--inits official,zero_init] [--recal 4,0]
        [--genomes NAME,...]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from scipy.stats import kendalltau, spearmanr

from dla_nas import Genome, build_model
from dla_nas.arch import zoo
from dla_nas.arch.cost import model_cost
from dla_nas.data import DataConfig, load_dataset
from dla_nas.train.config import TrainConfig
from dla_nas.train.trainer import train


def _small(widths, depths, fan_in=2, block="basic", residual=False):
    stages = [{"channels": w, "depth": d, "fan_in": fan_in, "stride": 1 if i == 0 else 2,
               "level_root": i > 0, "root_residual": residual}
              for i, (w, d) in enumerate(zip(widths, depths))]
    return Genome.from_dict({"block": block, "stages": stages,
                             "stem": {"kernel": 3, "levels": [{"channels": widths[0]}]}})


GENOMES = {
    "tiny 8-16-32 d1": _small([8, 16, 32], [1, 1, 1]),
    "small 16-32-64 d1": _small([16, 32, 64], [1, 1, 1]),
    "deep 16-32-32 d3": _small([16, 32, 32], [1, 3, 3]),
    "fan3 16-32-64 d2": _small([16, 32, 64], [1, 2, 2], fan_in=3),
    "bottleneck 32-64-128 d2 res": _small([32, 64, 128], [1, 2, 2], block="bottleneck", residual=True),
    "dla46_c_cifar": zoo.load("dla46_c_cifar"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--long", type=int, default=15)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--inits", default="official,zero_init")
    parser.add_argument("--recal", default="4", help="BN recalibration batches to compare")
    parser.add_argument("--genomes", default=",".join(GENOMES))
    args = parser.parse_args()
    data = load_dataset(DataConfig(args.dataset, resolution=args.resolution))
    genomes = {n: GENOMES[n] for n in args.genomes.split(",")}
    rows, summary = [], {}
    settings = [(i, int(r)) for i in args.inits.split(",") for r in args.recal.split(",")]
    for init, recal in settings:
        accs = {"short": [], "long": []}
        for name, genome in genomes.items():
            row = {"init": init, "recal": recal, "genome": name}
            for budget in ("short", "long"):
                epochs = getattr(args, budget)
                torch.manual_seed(args.seed)
                model = build_model(genome, data.num_classes, data.in_chans,
                                    zero_init_residual=init == "zero_init")
                if budget == "short":
                    cost = model_cost(model, (data.in_chans, data.resolution, data.resolution))
                    row.update(params=cost.params, macs=cost.macs)
                t0 = time.perf_counter()
                res = train(model, data, TrainConfig(min_steps=0, epochs=epochs, seed=args.seed,
                                                     zero_init_residual=init == "zero_init",
                                                     bn_recalibration_batches=recal))
                row[budget] = {"val_acc": res.val_acc, "first_epoch_loss": res.train_loss_per_epoch[0],
                               "seconds": round(time.perf_counter() - t0, 1),
                               "diverged": res.diverged}
                accs[budget].append(res.val_acc)
            rows.append(row)
        summary[f"{init}, recal {recal}"] = {
            "kendall_tau": kendalltau(accs["short"], accs["long"]).statistic,
            "spearman_rho": spearmanr(accs["short"], accs["long"]).statistic,
            "mean_short_val_acc": sum(accs["short"]) / len(accs["short"]),
            "mean_long_val_acc": sum(accs["long"]) / len(accs["long"]),
        }
    print(json.dumps({"benchmark": "proxy_ranking", "dataset": f"{data.name}@{data.resolution}px",
                      "short_epochs": args.short, "long_epochs": args.long, "seed": args.seed,
                      "summary": summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
