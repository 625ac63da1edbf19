"""``data``: what a dataset holds, and what to watch for, before any training."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .model_cmds import _data_config

if TYPE_CHECKING:
    from rich.table import Table

    from ..data.report import DataReport


def cmd_data(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..data.config import balanced_sampling
    from ..data.report import data_report, warnings

    report = data_report(load_dataset(_data_config(args, args.resolution)))
    lines = warnings(report, balanced_sampling(args.sampling or "auto", report.counts[0]))
    if args.json:
        print(json.dumps({**report.to_dict(), "warnings": lines}, indent=2))
        return 0
    from rich.console import Console

    console = Console()
    console.print(report_table(report))
    for line in report_facts(report):
        console.print(line, highlight=False)
    for line in lines:
        console.print(f"[yellow]warning[/]: {line}", highlight=False)
    return 0


def report_table(report: DataReport) -> Table:
    """Images per class (rows) and split (columns), with totals; for masks, the images that
    hold each class, and the images in all."""
    from rich.table import Table

    from ..data.report import SPLITS

    table = Table(title=f"{report.name} at {report.resolution}px, {report.channels} channel(s)")
    table.add_column("class", no_wrap=True)
    for col in (*SPLITS, "total"):
        table.add_column(col, justify="right")
    for c, name in enumerate(report.class_names):
        table.add_row(name, *(str(n[c]) for n in report.counts), str(report.totals[c]))
    if report.dense:  # an image holds several classes; the background is in every one
        table.title += " (masks: images that hold each class)"
    else:
        table.add_row("all", *(str(sum(n)) for n in report.counts), str(sum(report.totals)),
                      style="bold")
    return table


def report_facts(report: DataReport) -> list[str]:
    """Imbalance, sizes, modes, formats, duplicates and augmentation, one short line each."""
    from ..data.report import augment_note

    out = [] if report.dense else \
        [f"imbalance (largest / smallest class): {report.imbalance:.1f}x"]
    s = report.sizes
    if s is not None:
        out += [f"sizes on disk: width {s.width[0]}/{s.width[1]}/{s.width[2]}, height "
                f"{s.height[0]}/{s.height[1]}/{s.height[2]} (min/median/max); aspect w/h "
                f"{s.aspect[0]:g} to {s.aspect[1]:g}",
                f"modes {', '.join(report.modes)}; formats {', '.join(report.formats)}"]
    out.append(f"duplicates across splits (val/test images also in train): {report.leaks}")
    if report.skipped:
        out.append(f"unreadable images left out: {report.skipped} (each named in a warning)")
    out.append(augment_note(report))
    return out
