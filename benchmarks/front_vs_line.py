"""Does a run's confirmed front beat its hand-designed line? Prints JSON.

Reads RUN/confirm.jsonl (written by `dla-nas confirm RUN --pareto --baselines ...`) and
reports the best hand design (highest mean test accuracy over seeds), the targets of the
"aggregation as a choice" issue (a search candidate at its accuracy with <= 1/2 its MACs, or
one point better at <= its MACs with the lowest seed above its highest), the gap, and the
hypervolumes of the confirmed front and of the line (``dla_nas.analysis.confirm.compare_with_line``).
Each row gives a candidate's label, MACs, seed count and test figure as [mean, lowest,
highest] over its seeds. A search trial that drew a hand design (the line's, or one of the
space's baselines, which a warm start draws first) is not counted as a finding.

    python benchmarks/front_vs_line.py results/reference-digits-aggregation
    python benchmarks/front_vs_line.py RUN --share 0.667 --point-macs 1.1   # over a backbone
    python benchmarks/front_vs_line.py RUN --metric val_miou               # a dense run
    python benchmarks/front_vs_line.py RUN --line EARLIER_RUN   # the line confirmed there

A run over a backbone (a ``backbone:`` space) has its hand designs (``own``, ``own_cut<N>``)
as search trials of its warm start: confirmed with ``--trial``, they are its line.
"""

from __future__ import annotations

import argparse
import json

from dla_nas.analysis.confirm import (
    compare_with_line,
    hand_design_hashes,
    load_confirmed,
    load_line,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder with a confirm.jsonl")
    parser.add_argument("--share", type=float, default=0.5,
                        help="a candidate must reach the best hand design at <= this share "
                             "of its MACs (default 0.5)")
    parser.add_argument("--point-macs", type=float, default=1.0,
                        help="... or beat it by 1 point at <= this multiple of its MACs "
                             "(default 1.0)")
    parser.add_argument("--metric", choices=["val_acc", "val_balanced_acc", "val_miou"],
                        help="the test figure compared: the one matching this val metric "
                             "(default: test accuracy; val_miou: test mIoU, for a dense run)")
    parser.add_argument("--line", metavar="RUN",
                        help="the hand-designed line from another run's confirmation with the "
                             "same recipe (its baselines), say an earlier search of the same "
                             "data, instead of training it again")
    args = parser.parse_args()
    confirmed = load_confirmed(args.run)
    if args.line:
        confirmed += load_line(args.line, args.run)
    out = compare_with_line(confirmed, hand_design_hashes(args.run),
                            args.share, args.point_macs, args.metric or "val_acc")
    print(json.dumps({"run": args.run, **({"line": args.line} if args.line else {}), **out},
                     indent=1))


if __name__ == "__main__":
    main()
