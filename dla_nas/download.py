"""Fetching one file over HTTP(S): progress on stderr, a hash check, and an atomic write, so
that an interrupted or corrupt download never leaves a file where a good one is expected."""

from __future__ import annotations

import hashlib
import http.client
import sys
import time
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Callable

from .errors import DlaNasError
from .files import atomic_path

# the longest a download may take in all: a server that trickles bytes is given up on
DEADLINE_S = 600.0
STALL_S = 60.0  # the longest wait for the next bytes


class _TooSlow(OSError):
    """A download past its deadline."""


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects as usual and keeps each redirect response's headers."""

    def __init__(self) -> None:
        self.headers: list[Message] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, timeout: float):
    """The response to ``url`` and the headers of the redirects that led to it."""
    redirects = _RecordRedirects()
    return urllib.request.build_opener(redirects).open(url, timeout=timeout), redirects.headers


def fetch(url: str, dest: Path, error: type[DlaNasError],
          expected: str | Callable[[list[Message]], str | None] | None = None,
          algorithm: str = "sha256", hint: str = "",
          deadline: float = DEADLINE_S) -> tuple[str, str | None]:
    """Download ``url`` to ``dest``; return the file's hex digest and the digest it was checked
    against (None when there was none to check).

    ``expected`` is the digest or a prefix of it (torch hub names carry the first 8 hex digits
    of the sha256), or a function that reads it from the response headers, redirects first;
    a mismatch raises ``error``. ``dest`` appears only once the file is complete and checked;
    a failure, an interrupt included, leaves nothing behind. A download that takes longer
    than ``deadline`` seconds in all fails. ``hint`` ends the error line (what to do
    instead)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    tail = f"; {hint}" if hint else ""
    end, shown = time.monotonic() + deadline, -1
    try:
        with atomic_path(dest) as part, part.open("wb") as out:
            response, redirects = _open(url, timeout=min(STALL_S, deadline))
            with response:
                if callable(expected):
                    expected = expected([*redirects, response.headers])
                total, size = int(response.headers.get("Content-Length") or 0), 0
                while chunk := response.read1(1 << 20):  # whatever has come, at once
                    if time.monotonic() > end:
                        raise _TooSlow(f"not complete after {deadline:g} s, {size:,} bytes "
                                       "received")
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    percent = size * 100 // total if total else size >> 20
                    if percent != shown:
                        unit = "%" if total else " MiB"
                        print(f"\rdownloading {url}: {percent}{unit}", end="", file=sys.stderr,
                              flush=True)
                        shown = percent
                print(file=sys.stderr)
            if total and size != total:
                raise http.client.IncompleteRead(b"", total - size)
            found = digest.hexdigest()
            if expected is not None and not found.startswith(expected.lower()):
                raise error(f"{url}: {algorithm} {found} does not match the expected "
                            f"{expected}; the file is corrupt or not the one asked for{tail}")
    except (OSError, http.client.HTTPException) as exc:  # URLError, socket errors, truncation
        if shown != -1:
            print(file=sys.stderr)  # the error starts a line of its own, after the progress
        raise error(f"download of {url} failed ({exc.__class__.__name__}: {exc}){tail}") \
            from None
    return found, expected
