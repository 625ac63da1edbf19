"""Do zero-cost scores of untrained genomes rank them as the proxy's training does? Prints JSON.

For each run folder, over its search trials trained to the full proxy budget, Spearman rho
between the proxy's final validation accuracy and each score of the untrained network (seeded
initialisation, one class-mixed batch of training images):

- ``synflow`` (Tanaka et al., 2020): sum of |theta * dR/dtheta| for R the output sum of the
  network with |weights| on an all-ones input (BN in eval mode);
- ``naswot`` (Mellor et al., 2021): log |det K| of the ReLU activation-pattern kernel
  K = c c^T + (1 - c)(1 - c)^T over the batch;
- ``jacob_cov`` (Mellor et al., 2020, v1): minus the sum of log(v + k) + 1/(v + k) over the
  eigenvalues v of the correlation matrix of the input Jacobians, k = 1e-5;
- ``params`` and ``macs``, the baselines that zero-cost papers tend to leave out.

A score earns a ``--prescreen`` only if it beats MACs here on both data sets.

    python benchmarks/zero_cost.py results/reference-digits-fullres \
        results/reference-neu-steel-aggregation results/reference-neu-steel
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from dla_nas import Genome, build_model
from dla_nas.data import DataConfig, load_dataset, make_loader
from dla_nas.results import RunStore, load_run


def synflow(model: nn.Module, shape: tuple[int, ...]) -> float:
    model = model.double().eval()
    with torch.no_grad():
        signs = {n: p.sign() for n, p in model.state_dict().items() if p.is_floating_point()}
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    model.zero_grad()
    model(torch.ones(1, *shape, dtype=torch.double)).sum().backward()
    score = sum((p * p.grad).abs().sum().item() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        for n, p in model.state_dict().items():
            if n in signs:
                p.mul_(signs[n])
    return float(np.log(score + 1e-30))


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    codes: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: codes.append((out.detach() > 0)
                                                                      .flatten(1).float()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model.train()(x)
    for h in hooks:
        h.remove()
    c = torch.cat(codes, 1).double()
    k = c @ c.t() + (1 - c) @ (1 - c).t()
    return float(torch.linalg.slogdet(k).logabsdet)


def jacob_cov(model: nn.Module, x: torch.Tensor) -> float:
    x = x.clone().requires_grad_(True)
    model.train()(x).sum().backward()
    jac = x.grad.flatten(1).double().numpy()
    v = np.linalg.eigvalsh(np.corrcoef(jac))
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = {"benchmark": "zero_cost", "batch": args.batch, "runs": []}
    for run in args.runs:
        info = RunStore(run).info()
        rows = list({r.key: r for r in load_run(run)  # each genome once (not its reuses)
                     if r.kind == "search" and r.feasible_and_trained}.values())
        batches: dict[int, torch.Tensor] = {}  # one class-mixed batch per resolution
        scores: dict[str, list[float]] = {k: [] for k in
                                          ("synflow", "naswot", "jacob_cov", "params", "macs")}
        for r in rows:
            c, h, _ = r.input_shape or (info["data"]["in_chans"],
                                        r.recipe.get("resolution", info["data"]["resolution"]), 0)
            classes = r.num_classes or info["data"]["num_classes"]
            if h not in batches:
                data = load_dataset(DataConfig(info["data"]["name"], resolution=h))
                loader = make_loader(data, "train", args.batch, torch.device("cpu"),
                                     train=False, seed=0, shuffle=True, num_workers=0)
                batches[h] = next(iter(loader))[0]
            x = batches[h]
            torch.manual_seed(0)
            genome = Genome.from_dict(r.genome)
            scores["synflow"].append(synflow(build_model(genome, classes, c), (c, h, h)))
            scores["naswot"].append(naswot(build_model(genome, classes, c), x))
            scores["jacob_cov"].append(jacob_cov(build_model(genome, classes, c), x))
            scores["params"].append(float(r.params))
            scores["macs"].append(float(r.macs))
        acc = [r.val_acc for r in rows]
        out["runs"].append({
            "run": run, "genomes": len(rows),
            "spearman_vs_proxy_val_acc": {k: round(float(spearmanr(v, acc).statistic), 3)
                                          for k, v in scores.items()}})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
