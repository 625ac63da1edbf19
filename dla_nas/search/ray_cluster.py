"""Ray for the search: checking the Ray flags, reaching a cluster or starting a private local
Ray, the resources it offers, and the environment Tune runs in (restored afterwards)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from typing import Any, Iterator

from ..errors import OptionError
from .core import SearchOptions, cpu_cores

# Tune's settings for a search (set while it runs, then restored)
TUNE_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "1",  # a snapshot a second: cheap here
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # trials.jsonl is the log
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: no tables; a line a trial
}


def check_ray_options(opts: SearchOptions, *, address: str | None, gpus_per_trial: float,
                      cpus_per_trial: float) -> None:
    """Refuse flags that cannot work, naming the flag (``OptionError``, a ``ValueError``)."""
    def number(flag: str, value: Any) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise OptionError(f"{flag}: {value!r} is not allowed (a number)")
        return float(value)

    gpus = number("--gpus-per-trial", gpus_per_trial)
    cpus = number("--cpus-per-trial", cpus_per_trial)
    if gpus < 0:
        raise OptionError(f"--gpus-per-trial: {gpus:g} is not allowed (>= 0)")
    if gpus > 1 and not gpus.is_integer():
        raise OptionError(f"--gpus-per-trial: {gpus:g} is not allowed "
                          "(a fraction up to 1, or a whole number)")
    if cpus <= 0:
        raise OptionError(f"--cpus-per-trial: {cpus:g} is not allowed (> 0)")
    if address is not None:
        _parse_address(address)
        if address.startswith("ray://"):
            try:
                import grpc  # noqa: F401  (Ray Client's transport)
            except ImportError:
                raise OptionError(f"--address: {address!r} needs Ray Client, which is not "
                                  "installed (pip install 'ray[client]'); or run this on a "
                                  "node of the cluster with --address auto") from None
    if opts.workers != 1:
        raise OptionError(f"--workers: {opts.workers} is not used with --backend ray (Ray runs as "
                          "many trials at once as --cpus-per-trial and --gpus-per-trial allow)")
    if opts.storage is not None:
        raise OptionError("--storage: not used with --backend ray (its study lives in the run "
                          "folder's journal file)")
    if opts.gpus is not None:
        raise OptionError("--gpus: not used with --backend ray (use --gpus-per-trial; Ray gives "
                          "each trial its GPUs)")
    if opts.device == "cpu" and gpus > 0:
        raise OptionError(f"--gpus-per-trial: {gpus:g} with --device cpu (trials use cuda "
                          "when --gpus-per-trial > 0); drop one of them")
    if opts.device.startswith("cuda") and gpus == 0:
        raise OptionError("--gpus-per-trial: 0 with --device cuda (a trial sees only the GPUs "
                          "Ray gives it); pass e.g. --gpus-per-trial 1")


def _parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) to probe, or None for ``auto``/``local``; OptionError when malformed."""
    if address in ("auto", "local"):
        return None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f"--address: {address!r} is not allowed (auto, HOST:PORT or "
                          "ray://HOST:PORT)")
    return host.strip("[]"), int(port)


def probe_address(address: str | None) -> None:
    """Fail fast and clearly on an address nothing listens on (instead of Ray's retries)."""
    target = _parse_address(address) if address is not None else None
    if target is not None:
        try:
            socket.create_connection(target, timeout=5).close()
        except OSError as exc:
            raise OptionError(f"--address: cannot reach {address!r} ({exc.strerror or exc}); "
                              "is the Ray head running (ray start --head)?") from None


def connect(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address`` or start a private local Ray (unless Ray is already
    initialised in this process, as a caller or a test may have done)."""
    import ray

    if ray.is_initialized():
        return
    if address in (None, "local"):
        ray.init(address="local", num_cpus=num_cpus or cpu_cores(), include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level=logging.ERROR)
        return
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptionError(f"--address: cannot connect to {address!r} ({first[:200]})") from None


def check_resources(gpus: float, cpus: float) -> None:
    """Refuse per-trial resources that no node of the cluster has (Tune would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus for r in nodes):
        most = max((r.get("CPU", 0) for r in nodes), default=0)
        raise OptionError(f"--cpus-per-trial: {cpus:g} is more than any Ray node has "
                          f"(at most {most:g} CPUs)")
    if gpus > 0 and not any(r.get("GPU", 0) >= gpus for r in nodes):
        most = max((r.get("GPU", 0) for r in nodes), default=0)
        raise OptionError(f"--gpus-per-trial: {gpus:g} is more than any Ray node has "
                          f"({most:g} GPUs)")


@contextlib.contextmanager
def tune_environment() -> Iterator[None]:
    """``TUNE_ENVIRONMENT`` (where the caller has not set a value) and quiet Ray loggers for
    the length of the block. Afterwards the environment is as it was, including what Ray
    itself set meanwhile (``ray.init`` sets PYTHONBREAKPOINT, for one)."""
    saved = dict(os.environ)
    loggers = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [q.level for q in loggers]
    for key, value in TUNE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    for q in loggers:
        q.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        for q, level in zip(loggers, levels):
            q.setLevel(level)
