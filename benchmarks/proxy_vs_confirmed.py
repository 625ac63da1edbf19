"""Does the search's proxy rank networks as the confirmed test accuracy does? Prints JSON.

Reads a run folder that `dla-nas confirm` has been run on (for example with `--top 10`) and
compares, over the confirmed search trials, the proxy's validation accuracy (one seed, the
space's short budget) with the mean test accuracy over the confirmation seeds (full recipe):
Kendall tau and Spearman rho, and the same against the confirmed validation accuracy.

    python benchmarks/proxy_vs_confirmed.py --run results/reference-neu-steel
"""

from __future__ import annotations

import argparse
import json

from scipy.stats import kendalltau, spearmanr

from dla_nas.analysis.confirm import load_confirmed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    args = ap.parse_args()
    rows = [c for c in load_confirmed(args.run) if c.kind == "search"]
    proxy = [c.proxy_val_acc for c in rows]
    test = [c.test_acc[0] for c in rows]
    val = [c.val_acc for c in rows]
    out = {"benchmark": "proxy_vs_confirmed", "run": args.run, "genomes": len(rows),
           "seeds": sorted({len(c.seeds) for c in rows}),
           "rows": [{"trial": c.trial, "macs": c.macs, "proxy_val_acc": c.proxy_val_acc,
                     "confirmed_test_acc": c.test_acc, "confirmed_val_acc": c.val_acc}
                    for c in rows]}
    if len(rows) >= 3:
        out["kendall_tau_proxy_vs_test"] = kendalltau(proxy, test).statistic
        out["spearman_rho_proxy_vs_test"] = spearmanr(proxy, test).statistic
        out["kendall_tau_proxy_vs_confirmed_val"] = kendalltau(proxy, val).statistic
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
