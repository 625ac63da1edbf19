"""The ``dla-nas`` command line: ``main`` parses, runs one command, and turns bad input
(any ``DlaNasError``) into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from ..errors import DlaNasError
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except DlaNasError as exc:
        print(f"dla-nas {args.command}: error: {exc}", file=sys.stderr)
        return 2

