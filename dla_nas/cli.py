"""The ``dla-nas`` command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Callable, Sequence

from . import __version__
from .genome import GenomeError

# errors that are the user's input, not our bug: printed as one line, exit status 2
USER_ERRORS: tuple[type[Exception], ...] = (GenomeError,)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``3x224x224`` -> (3, 224, 224); a single number N means 3xNxN."""
    m = re.fullmatch(r"\s*(?:(\d+)x)?(\d+)(?:x(\d+))?\s*", text)
    if not m or (m.group(1) and not m.group(3)):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (CxHxW such as 3x224x224, or N)")
    c, h, w = m.group(1), m.group(2), m.group(3)
    shape = (int(c), int(h), int(w)) if c else (3, int(h), int(h if w is None else w))
    if min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (every dimension >= 1)")
    return shape


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (an integer >= 1)")
    return value


# ---- show ----------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from .builder import build_model, resolve_genome
    from .cost import model_cost

    genome = resolve_genome(args.genome)
    c, h, w = args.input
    genome.feature_sizes(min(h, w))
    model = build_model(genome, num_classes=args.classes, in_chans=c)
    cost = model_cost(model, args.input)
    levels = _describe_levels(genome)
    if args.json:
        out = {
            "name": genome.name or str(args.genome),
            "hash": genome.canonical_hash(),
            "input": list(args.input),
            "classes": args.classes,
            "params": cost.params,
            "macs": cost.macs,
            "other_flops": cost.other_flops,
            "stages": [{**lc.__dict__, "kind": desc} for lc, desc in zip(cost.levels, levels)],
            "genome": genome.to_dict(),
        }
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = f"{genome.name or args.genome}  hash {genome.canonical_hash()}  block {genome.block}"
    if genome.block == "bottleneckx":
        title += f" (cardinality {genome.cardinality})"
    table = Table(title=title)
    for col in ("level", "structure", "channels", "out size", "params", "MACs"):
        table.add_column(col, justify="left" if col in ("level", "structure") else "right",
                         no_wrap=True)
    for lc, desc in zip(cost.levels, levels):
        table.add_row(lc.name, desc, str(lc.channels), f"{lc.size}x{lc.size}",
                      f"{lc.params:,}", f"{lc.macs:,}")
    table.add_row("total", f"in {c}x{h}x{w}", "", "", f"{cost.params:,}", f"{cost.macs:,}",
                  style="bold")
    console = Console(width=max(Console().width, 110))  # the table needs ~100 columns
    console.print(table)
    console.print("structure: d depth, fan fan-in, /s stride, +in stage input joins the root "
                  "(level_root), +idaJ stage J joins too, rootK root kernel K, r residual")
    console.print(f"MACs are conv+linear multiply-accumulates; batch norm and pooling add "
                  f"{cost.other_flops:,} more (see README, 'Cost').")
    return 0


def _describe_levels(genome) -> list[str]:
    """One short structure note per level, plus the head."""
    stem = genome.stem
    out = [f"base {stem.kernel}x{stem.kernel}/{stem.stride} + {stem.levels[0].convs} conv/"
           f"{stem.levels[0].stride}"]
    out += [f"{lv.convs} conv/{lv.stride}" for lv in stem.levels[1:]]
    for st in genome.stages:
        text = f"tree d{st.depth} fan{st.fan_in} /{st.stride}"
        if st.level_root:
            text += " +in"
        if st.ida_from:
            text += " +ida" + ",".join(str(j) for j in st.ida_from)
        if st.root_kernel != 1 or st.root_residual:
            text += f" root{st.root_kernel}{'r' if st.root_residual else ''}"
        out.append(text)
    return out + ["pool + 1x1 conv"]


# ---- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dla-nas",
        description="Neural architecture search over Deep Layer Aggregation (DLA) networks: "
                    "describe networks as genomes, count their cost, train them, and search "
                    "for the best accuracy per MAC.",
    )
    parser.add_argument("--version", action="version", version=f"dla-nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    show = sub.add_parser(
        "show", help="print a genome's structure, params and MACs",
        description="Print the structure of a zoo network or a genome/exported YAML file, "
                    "with params and conv+linear MACs per level for one input size.",
    )
    show.add_argument("genome", metavar="NAME_OR_YAML",
                      help="a zoo name (e.g. dla34, dla34_cifar) or a genome/exported YAML path")
    show.add_argument("--input", type=parse_input_shape, default=(3, 224, 224),
                      metavar="CxHxW", help="input shape (default 3x224x224; N means 3xNxN)")
    show.add_argument("--classes", type=positive_int, default=1000,
                      help="number of output classes (default 1000)")
    show.add_argument("--json", action="store_true",
                      help="print one JSON object (params, macs, hash, stages, genome)")
    show.set_defaults(func=cmd_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except USER_ERRORS as exc:
        print(f"dla-nas {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
