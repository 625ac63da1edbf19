"""The ``dla-nas`` command line: ``main`` parses, runs one command, and turns bad input
(any ``DlaNasError``) into one line on stderr and exit status 2; a warning is one line too.
SIGTERM (``kill``, ``timeout``, ``docker stop``, a job scheduler) stops a command as Ctrl-C
does: finished work saved, and the line that says how to continue."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import warnings
from typing import Callable, Iterator, Sequence

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
        with _term_as_interrupt():
            return func(args)
    except DlaNasError as exc:
        print(f"dla-nas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a command that saves nothing along the way (train, export)
        print(f"dla-nas {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk or a denied write that no atomic write named
        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"dla-nas {args.command}: error: {write_error(exc.filename or '?', exc)}",
              file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = shown


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM goes to the SIGINT handler in place (Tune's graceful stop
    during a Ray search; else KeyboardInterrupt, also where SIGINT is ignored, as in a job
    started with ``nohup ... &``)."""
    def on_term(signum, frame) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: signals are not ours to take
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the user reads it: its message, not the source line that raised it."""
    return f"warning: {message}\n"

