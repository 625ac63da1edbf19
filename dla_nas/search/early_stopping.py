"""Pareto-aware successive halving: stop the trials that are hopeless for the *front*, not for
accuracy alone.

A trial that reaches a rung (an epoch count) is compared with the trials recorded at that rung
before it, on all of the space's objectives: its accuracy there, and its costs (MACs, params,
latency), which are known before training. It continues when it is on the rung's Pareto front,
or when it is in the top ``1/eta`` of the rung ordered by front rank, then by crowding
distance (NSGA-II's; ``dla_nas.dominance``). So the cheapest trial of the rung's front is never
stopped for its accuracy alone, which single-metric ASHA does: it stops the cheap networks
that belong on the front. As in asynchronous successive halving, a decision is final and
uses the entries recorded so far: the first trials at a rung always continue.

Rungs sit at ``min_epochs * eta**k`` epochs below the proxy budget. ``min_epochs`` defaults
to half the budget: over five reference runs (``benchmarks/rung_correlation.py``), Kendall tau
between a trial's accuracy after epoch e and its final accuracy was -0.07 to 0.31 after epoch
1, 0.49-0.67 at a third of the budget (below 0.5 on one run, and not rising monotonically
after it), and 0.71-0.91 at half. A rung before that ranks noise. So the default budget has
one rung, at half of it: a stopped trial saves half its training.

``eta`` defaults to 3: besides the rung's front, the top third continues. Replayed on finished
full-fidelity runs (``benchmarks/stopping_replay.py``), eta 3 at that rung saved about a
fifth more training than eta 2 and lost at most 0.13% more hypervolume. With it (and TPE by
groups) the Optuna default ended with better fronts than before on digits and neu-steel;
with NSGA-II on Ray, level (docs/reports/early-stopping.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..dominance import crowding_distance, non_dominated_sort, scale
from ..errors import OptionError
from ..results import RunStore, TrialRecord
from ..train.trainer import EpochReport

FIRST_RUNG_FRACTION = 1 / 2  # of the proxy's epochs; measured, see the module docstring
ETA = 3  # the top third of a rung continues (besides its front); measured, see above


@dataclass(frozen=True)
class Rungs:
    """The epochs at which trials are compared: ``min_epochs * eta**k`` below ``budget``."""

    budget: int  # the proxy's epochs (the full fidelity)
    min_epochs: int
    eta: int = ETA

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise OptionError(f"eta: {self.eta} is not allowed (an integer >= 2)")
        if self.min_epochs < 1:
            raise OptionError(f"min_epochs: {self.min_epochs} is not allowed (an integer >= 1)")

    @classmethod
    def for_budget(cls, budget: int, eta: int = ETA,
                   fraction: float = FIRST_RUNG_FRACTION) -> Rungs:
        """The rungs of a budget, the first at ``fraction`` of it (rounded up); by default
        at half of it."""
        return cls(budget, max(1, math.ceil(budget * fraction)), eta)

    @property
    def epochs(self) -> tuple[int, ...]:
        out, epoch = [], self.min_epochs
        while epoch < self.budget:
            out.append(epoch)
            epoch *= self.eta
        return tuple(out)


@dataclass(frozen=True)
class RungEntry:
    """One trial at one rung: its objective values there (accuracy at the rung, costs)."""

    trial: int
    epoch: int
    values: tuple[float, ...]  # in the order of the space's objectives

    def to_dict(self) -> dict:
        return {"trial": self.trial, "epoch": self.epoch, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: dict) -> RungEntry:
        return cls(int(data["trial"]), int(data["epoch"]), tuple(float(v) for v in data["values"]))


def rung_entry(trial: int, epoch: int, metrics: dict[str, float],
               objectives: Sequence[tuple[str, str]]) -> RungEntry:
    """The entry of a trial at ``epoch`` from its metrics there (``val_acc``, ``macs``, ...),
    in the objective space (log10 MACs and params, as the hypervolume measures them)."""
    return RungEntry(trial, epoch, tuple(scale(m, metrics[m]) for m, _ in objectives))


def keep_going(entry: RungEntry, earlier: Sequence[RungEntry], directions: Sequence[str],
               eta: int) -> bool:
    """Whether the trial of ``entry`` continues past its rung, given the entries recorded at
    the same rung before it (other trials' only)."""
    pool = [e for e in earlier if e.trial != entry.trial and e.epoch == entry.epoch] + [entry]
    me = len(pool) - 1
    ranks = non_dominated_sort([e.values for e in pool], directions)
    if ranks[me] == 0:
        return True
    crowding = [0.0] * len(pool)
    for rank in set(ranks):
        members = [i for i, r in enumerate(ranks) if r == rank]
        for i, d in zip(members, crowding_distance([pool[i].values for i in members])):
            crowding[i] = d
    order = sorted(range(len(pool)), key=lambda i: (ranks[i], -crowding[i]))
    return order.index(me) < math.ceil(len(pool) / eta)


class ParetoStopping:
    """Pareto early stopping for the trials of one run folder, shared by the processes that
    search it: each trial enters its rungs in the run's ``rungs.jsonl`` (``RunStore``) and
    stops where ``keep_going`` says so."""

    def __init__(self, store: RunStore, rungs: Rungs,
                 objectives: Sequence[tuple[str, str]]) -> None:
        self.store, self.rungs, self.objectives = store, rungs, tuple(objectives)

    def __call__(self, record: TrialRecord, report: EpochReport) -> bool:
        """True to stop ``record``'s trial after the epoch of ``report`` (the Optuna
        backend's epoch callback)."""
        if report.val is None:
            return False
        metrics = {**report.val.to_dict("val_"), "macs": record.macs, "params": record.params,
                   "latency_ms": record.latency_ms}
        return self.stop_at(record.trial, report.epoch, metrics)

    def stop_at(self, trial: int, epoch: int, metrics: dict[str, float]) -> bool:
        """True to stop ``trial`` after ``epoch``, given its metrics then (every objective)."""
        if epoch not in self.rungs.epochs:
            return False
        entry = rung_entry(trial, epoch, metrics, self.objectives)
        earlier = [RungEntry.from_dict(d) for d in self.store.enter_rung(entry.to_dict())]
        return not keep_going(entry, earlier, [d for _, d in self.objectives], self.rungs.eta)
