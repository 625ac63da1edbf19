"""The results store of a run: ``results/<run>/``.

- ``run.yaml``: the resolved space, the command's arguments, the data's shape, the resolved
  sampler, versions and the seed;
- ``study.journal``: the Optuna storage (a journal file, safe for several processes);
- ``trials.jsonl``: one JSON line per finished trial (format in docs/reference/records.md),
  appended under a file lock and flushed to disk at once, so a crash loses no finished trial;
- ``rungs.jsonl``: with Pareto early stopping, one line per trial that reached a rung (trial,
  epoch, objective values there), which the workers compare against.

Both search backends write the same format; ``load_run`` reads it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import time
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from .checks import Rule, number, optional
from .errors import RunError
from .files import atomic_path, read_yaml

STATUSES = ("ok", "infeasible", "reused", "diverged", "failed")
# statuses whose metrics are real measurements of a trained network
TRAINED = ("ok", "reused")
# the validation metrics beside val_acc that a trained record carries
VAL_METRICS = ("val_balanced_acc", "val_macro_f1", "val_per_class_recall", "val_confusion",
               "val_miou")



@dataclass
class TrialRecord:
    """One finished trial (or baseline) of a run."""

    trial: int
    status: str
    hash: str
    kind: str = "search"  # "search" or "baseline"
    name: str = ""
    genome: dict | None = None
    val_acc: float | None = None
    val_balanced_acc: float | None = None
    val_macro_f1: float | None = None
    val_per_class_recall: list[float | None] = field(default_factory=list)
    val_confusion: list[list[int]] = field(default_factory=list)
    val_miou: float | None = None  # a dense task's (pixel accuracy is then val_acc)
    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    latency_from: str | None = None  # "table" (measured on the target) or "measured" (here)
    val_acc_per_epoch: list[float] = field(default_factory=list)
    epochs_run: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker: str = ""
    device: str = ""
    reason: str = ""
    reused_from: int | None = None
    repairs: list[str] = field(default_factory=list)
    violations: dict[str, float] = field(default_factory=dict)
    stopped_rung: int | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    backend: str = "optuna"
    sampler: str = ""  # the sampler that proposed the genome (nsga2, tpe, random)
    input_shape: list[int] = field(default_factory=list)  # [channels, height, width]
    num_classes: int | None = None
    # the training settings searched with the genome (resolution, lr, weight_decay,
    # augment); empty when the space searches none
    recipe: dict[str, Any] = field(default_factory=dict)
    # the pretrained weights the trial started from (source, sha256, coverage: the fraction of
    # its parameters inherited); None when it started from random weights
    pretrained: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """What was evaluated: the genome's hash, plus the recipe when one was searched."""
        return trial_key(self.hash, self.recipe)

    def fail(self, reason: str) -> "TrialRecord":
        """Mark this record failed for ``reason``, keeping what was measured; returns it."""
        self.status, self.reason = "failed", reason
        return self.finish()

    def finish(self) -> "TrialRecord":
        """Stamp the end time and the wall time; returns the record."""
        self.finished_at = time.time()
        self.wall_seconds = self.finished_at - self.started_at if self.started_at else 0.0
        return self

    def set_val_metrics(self, val) -> None:
        """Copy a validation ``Metrics`` (dla_nas.train.metrics) into the ``val_*`` fields."""
        self.val_balanced_acc, self.val_macro_f1 = val.balanced_acc, val.macro_f1
        self.val_per_class_recall, self.val_confusion = val.per_class_recall, val.confusion
        self.val_miou = getattr(val, "miou", None)

    def sampler_value(self, metric: str, direction: str) -> float:
        """The value a sampler is told: a maximised metric (an accuracy) is 0 unless the
        network was trained (infeasible, diverged), so that the sampler moves away."""
        if direction == "maximize" and self.status not in TRAINED:
            return 0.0
        return float(self.value(metric) or 0.0)

    @property
    def feasible_and_trained(self) -> bool:
        """True when the metrics come from a network trained to the full proxy budget, within
        the constraints (an early-stopped trial's accuracy is from fewer epochs)."""
        return self.status in TRAINED and self.val_acc is not None and self.stopped_rung is None

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def trial_key(digest: str, recipe: dict[str, Any]) -> str:
    """A genome hash and a searched recipe as one id: equal ids train the same way (values
    written in full, so two log-scale draws never share an id)."""
    if not recipe:
        return digest
    return digest + "@" + ",".join(f"{k}={recipe[k]!r}" for k in sorted(recipe))


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.run_yaml = self.path / "run.yaml"
        self.trials_file = self.path / "trials.jsonl"
        self.journal = self.path / "study.journal"
        self.rungs_file = self.path / "rungs.jsonl"
        self._lock_file = self.path / ".lock"
        self.states = self.path / "states"

    def trial_state(self, key: str) -> Path:
        """Where the training of genome and recipe ``key`` (``TrialRecord.key``) keeps its
        state between epochs (the Optuna backend's; Ray trials keep theirs in Tune's
        folders): by key, so the retry of an interrupted trial, which draws the same, finds
        it."""
        return self.states / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.state.pt"

    def check_new(self) -> None:
        """Refuse a folder that holds files (hidden ones aside) as the place of a new run: a
        run whose run.yaml was lost, a train's output, anything else; the records would mix
        with what is there."""
        if not self.path.is_dir():
            return
        found = sorted(p.name for p in self.path.iterdir() if not p.name.startswith("."))
        if found and not self.run_yaml.exists():  # another search's run.yaml, just written
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3
                                            else "")
            raise RunError(f"{self.path}: holds {shown} but no run.yaml (not a dla-nas run, "
                           "or its run.yaml was lost); a new run needs a new or empty folder: "
                           "use another --out")

    def create_or_check(self, run_info: dict[str, Any]) -> bool:
        """Write ``run.yaml`` for a new run; for an existing one check that the space is the
        same. Returns True when the run already existed (a resume)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.run_yaml.exists():
            old = self.info()
            if old.get("space_fingerprint") != run_info["space_fingerprint"]:
                raise RunError(
                    f"{self.run_yaml}: this run was made with another search space "
                    f"({old.get('space', {}).get('name', '?')}, fingerprint "
                    f"{old.get('space_fingerprint')}); use another --out to start a new run")
            return True
        info = {**run_info, "versions": versions()}
        with atomic_path(self.run_yaml) as tmp:
            tmp.write_text(yaml.safe_dump(info, sort_keys=False))
        return False

    def info(self) -> dict[str, Any]:
        """The contents of ``run.yaml``; a missing, unreadable or malformed one (not a
        mapping) raises ``RunError`` naming the file."""
        if not self.run_yaml.exists():
            raise RunError(f"{self.path}: not a dla-nas run (no run.yaml)")
        info = read_yaml(self.run_yaml, RunError) or {}
        if not isinstance(info, dict):
            raise RunError(f"{self.run_yaml}: expected a mapping of run settings, got "
                           f"{type(info).__name__}")
        return info

    def data(self) -> dict[str, Any]:
        """run.yaml's ``data``: the shape of the data the run searched on (name, resolution,
        channels, classes); a run.yaml without it raises ``RunError`` naming the file."""
        data = self.info().get("data")
        if not isinstance(data, dict) or not {"name", "resolution", "in_chans",
                                               "num_classes"} <= data.keys():
            raise RunError(f"{self.run_yaml}: data: missing or incomplete (the mapping that "
                           "dla-nas search writes: name, resolution, in_chans, num_classes)")
        return data

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on the run, across processes on this machine."""
        self.path.mkdir(parents=True, exist_ok=True)
        return file_lock(self._lock_file)

    def append(self, record: TrialRecord) -> None:
        """Append one record and flush it to disk before returning."""
        with self.lock():
            append_line(self.trials_file, record.to_dict())

    def records(self) -> list[TrialRecord]:
        return load_run(self.path, must_exist=False)

    def enter_rung(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Append ``entry`` (a trial at a rung: ``trial``, ``epoch``, ...) to ``rungs.jsonl``
        and return the entries recorded at the same epoch before it, in one step across
        processes, so two trials reaching a rung together see each other in order."""
        with self.lock():
            earlier = [d for d in read_jsonl(self.rungs_file, lambda d: "epoch" in d)
                       if d["epoch"] == entry["epoch"]]
            append_line(self.rungs_file, entry)
        return earlier

    def search_records(self) -> dict[int, TrialRecord]:
        """The finished search trials by number (baselines left out)."""
        return {r.trial: r for r in self.records() if r.kind == "search"}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held on ``path`` (created if missing), across processes."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def append_line(path: Path, data: dict[str, Any]) -> None:
    """Append ``data`` as one JSON line and flush it to disk. The line starts on a fresh line
    even when a crash left the file's last line half-written, so it is never glued to it."""
    line = json.dumps(data, separators=(",", ":")) + "\n"
    with open(path, "a+b") as fh:
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode())
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path, valid: Callable[[dict], bool],
               refuse: Callable[[dict], str | None] = lambda data: None) -> list[dict]:
    """The JSON objects of a JSON-lines file that pass ``valid``, in file order; a corrupt
    line is skipped with a warning that names the file and line number. A record for which
    ``refuse`` says what is wrong (a value no measurement gives) raises ``RunError`` naming
    the file and line: it would mislead whatever reads it. No file: empty."""
    out: list[dict] = []
    if not path.exists():
        return out
    try:
        with open(path, "rb") as fh:
            lines = list(fh)
    except OSError as exc:  # a folder, no permission
        raise RunError(f"{path}: cannot be read ({exc.strerror}); it must be a JSON-lines "
                       "file") from None
    for line_number, raw in enumerate(lines, 1):
        line = raw.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            wrong = refuse(data) if isinstance(data, dict) else None
            if wrong:
                raise RunError(f"{path}:{line_number}: {wrong}; fix or remove that line")
            if not isinstance(data, dict) or not valid(data):
                raise ValueError("not a record of this file")
        except RunError:
            raise
        except ValueError as exc:
            warnings.warn(f"{path}:{line_number}: skipped a corrupt line ({exc})",
                          stacklevel=3)
            continue
        out.append(data)
    return out


def load_run(path: str | Path, must_exist: bool = True) -> list[TrialRecord]:
    """The records of a run folder (or of a ``trials.jsonl`` path), in file order.

    A corrupt line is skipped with a warning that names the file and line number."""
    path = Path(path)
    trials = path if path.name.endswith(".jsonl") else path / "trials.jsonl"
    if not trials.exists():
        if must_exist:
            raise RunError(f"{path}: no trials.jsonl (not a dla-nas run, or no trial finished yet)")
        return []
    return [TrialRecord.from_dict(d) for d in read_jsonl(trials, _is_trial, _out_of_range)]


_TRIAL_TYPES = typing.get_type_hints(TrialRecord)


def _is_trial(data: dict) -> bool:
    """Whether a JSON object is a trial record: a known status, and every field it has (trial
    and hash at least) of the type that ``TrialRecord`` declares."""
    return (data.get("status") in STATUSES and "trial" in data and "hash" in data
            and all(_fits(v, _TRIAL_TYPES[k]) for k, v in data.items() if k in _TRIAL_TYPES))


_FRACTION = optional(number(0, 1))
_COUNT = optional(number(0))
# the values a trained network can have (a NaN or a negative cost would top a Pareto front)
_TRIAL_RANGES: tuple[tuple[str, Rule], ...] = (
    ("val_acc", _FRACTION), ("val_balanced_acc", _FRACTION), ("val_macro_f1", _FRACTION),
    ("val_miou", _FRACTION), ("macs", _COUNT), ("params", _COUNT), ("latency_ms", _COUNT))


def _out_of_range(data: dict) -> str | None:
    """What is wrong with a trial record's numbers (NaN and infinities included), or None;
    values of another type are left to ``_is_trial``, which skips the line."""
    for key, rule in _TRIAL_RANGES:
        value = data.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        allowed = rule(value)
        if allowed is not None:
            return f"{key}: {data[key]!r} is not allowed ({allowed})"
    return None


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type ``hint`` (a list's or dict's items are not checked;
    an int counts as a float, a bool as neither)."""
    if isinstance(hint, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    kind = typing.get_origin(hint) or hint
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return type(value) is int
    return isinstance(value, kind)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("dla-nas", "torch", "optuna", "ray", "fvcore"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out
