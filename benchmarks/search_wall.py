"""End-to-end wall time of a search, for one or more source trees in turn; prints JSON.

Each run is ``python -P -m dla_nas.cli search --space SPACE --trials N --out TMP [flags]`` in
a fresh process with ``PYTHONPATH`` set to a source tree (default: this checkout; ``-P`` keeps
the working directory's own ``dla_nas`` from shadowing it, and the run checks which code it
imports), timed from the start of the process to its end. A run reports its wall seconds, the
seconds to the first trial's start (imports, data, worker start-up), the trials' training
seconds (their ``train_seconds``: training steps only, not evaluation), the seconds from the
last record to the end, every record's val_acc and val_balanced_acc in trial order (two trees
that make the same records give the same lists), and each trial's genome hash, status, epochs
and training seconds (the same genome's seconds compare the trees' training speed). Trees take
turns (A B A B ...), so that the machine's slow moments fall on both.

    python benchmarks/search_wall.py --space search_spaces/digits-tiny.yaml --trials 12 \\
        [--tree ../other-checkout] [--repeats 2] [--search-flags "--dataset folder:PATH"]

To compare a change with its parent: ``git worktree add --detach ../before HEAD~1``, then
``--tree ../before --tree .``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_of(tree: Path) -> dict[str, str]:
    """The environment that runs ``tree``'s dla_nas, checked: a Python started with it (and
    ``-P``) imports the package from ``tree``, not from the working directory or an
    installed copy."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-P", "-c", "import dla_nas; print(dla_nas.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree):
        raise SystemExit(f"search_wall: {tree}: dla_nas is imported from {where}, not the tree")
    return env


def timed_search(tree: Path, space: str, trials: int, flags: list[str]) -> dict:
    """One search with ``tree``'s code in a fresh process, and what its records say."""
    env = code_of(tree)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.time()
        done = subprocess.run([sys.executable, "-P", "-m", "dla_nas.cli", "search",
                               "--space", space, "--trials", str(trials), "--out", str(out),
                               *flags],
                              env=env, capture_output=True, text=True)
        end = time.time()
        if done.returncode != 0:
            raise SystemExit(f"search_wall: {tree}: the search failed:\n{done.stderr[-2000:]}")
        records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    records.sort(key=lambda r: r["trial"])
    return {"tree": str(tree), "wall_s": round(end - start, 2),
            "to_first_trial_s": round(min(r["started_at"] for r in records) - start, 2),
            "train_s": round(sum(r["train_seconds"] or 0.0 for r in records), 2),
            "after_last_record_s": round(end - max(r["finished_at"] for r in records), 2),
            "val_acc": [r["val_acc"] for r in records],
            "val_balanced_acc": [r.get("val_balanced_acc") for r in records],
            "trials": [{"trial": r["trial"], "hash": r["hash"], "status": r["status"],
                        "epochs": r["epochs_run"], "train_s": r["train_seconds"]}
                       for r in records]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="search_spaces/digits-tiny.yaml")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--tree", action="append", type=Path,
                        help="a source tree to time (repeatable; default: this checkout)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--search-flags", default="", help="more flags for dla-nas search")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree] if args.tree else [ROOT]
    flags = shlex.split(args.search_flags)
    runs = [timed_search(tree, args.space, args.trials, flags)
            for _ in range(args.repeats) for tree in trees]
    same = len({json.dumps([r["val_acc"], r["val_balanced_acc"]]) for r in runs}) == 1
    print(json.dumps({"benchmark": "search_wall", "space": args.space, "trials": args.trials,
                      "search_flags": flags, "cpus": os.cpu_count(), "runs": runs,
                      "same_records": same}, indent=2))


if __name__ == "__main__":
    main()
