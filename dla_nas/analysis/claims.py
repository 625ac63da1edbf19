"""Claims on units of work that several processes share: which process trains which unit.

A claim names its process (pid, host and the process's start time, so that a reused pid is
not taken for it) and is read and written only under the caller's file lock. A claim whose
process on this machine is gone is stale: a crash never blocks a unit for good. A claim made
on another machine cannot be checked and stands until its process removes it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..files import atomic_path


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the command name
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """The claim of the running process."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": process_start(pid),
            "since": time.time()}


def is_local(claim: dict[str, Any]) -> bool:
    """Whether ``claim`` was made on this machine (so its process can be checked)."""
    return claim.get("host") == socket.gethostname()


def is_mine(claim: dict[str, Any]) -> bool:
    return is_local(claim) and claim.get("pid") == os.getpid()


def is_alive(claim: dict[str, Any]) -> bool:
    """Whether the process that made ``claim`` may still be working on it."""
    if not is_local(claim):
        return True  # another machine's process cannot be checked from here
    pid = claim.get("pid")
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, under another user
    start, now = claim.get("start"), process_start(pid)
    return start is None or now is None or start == now


class Claims:
    """A JSON file of claims by unit key (a string); call every method under the lock that
    guards the work it describes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def live(self) -> dict[str, dict[str, Any]]:
        """The claims of processes that may still be working; a corrupt file holds none."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: c for k, c in data.items() if isinstance(c, dict) and is_alive(c)}

    def write(self, claims: dict[str, dict[str, Any]]) -> None:
        """Replace the file with ``claims`` (atomically); none left removes it."""
        if not claims:
            self.path.unlink(missing_ok=True)
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(claims, indent=1))

    def release(self, key: str) -> None:
        """Drop this process's claim on ``key``."""
        claims = self.live()
        if key in claims and is_mine(claims[key]):
            del claims[key]
            self.write(claims)
