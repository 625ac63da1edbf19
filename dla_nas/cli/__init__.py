"""The ``dla-nas`` command line: ``main`` parses, runs one command, and turns bad input
(any ``DlaNasError``) into one line on stderr and exit status 2; a warning is one line too."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, Sequence

from ..errors import DlaNasError
from ..files import WRITE_ERRNOS, write_error
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line
    try:
        return func(args)
    except DlaNasError as exc:
        print(f"dla-nas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk or a denied write that no atomic write named
        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"dla-nas {args.command}: error: {write_error(exc.filename or '?', exc)}",
              file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = shown


def _one_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the user reads it: its message, not the source line that raised it."""
    return f"warning: {message}\n"

