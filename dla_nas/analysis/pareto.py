"""Pareto analysis of a run: fronts, hypervolume, knee point (dominance: ``dla_nas.dominance``).

Only feasible trials trained to the full proxy budget (status ``ok`` or ``reused``, not stopped
early by ASHA) ever enter a front; infeasible,
failed and diverged trials never do. Baselines (``kind: baseline``) are left out unless asked.

**Objective space.** Hypervolume and the knee are measured in the space the plots show:
accuracy (and latency) as they are, MACs and params as ``log10`` (``objective_vector``). A step
from 1M to 2M MACs then counts as much as one from 10M to 20M.

**Reference point** (``reference_point``): 0.0 for a maximised objective (val_acc); for a
minimised one (macs, params, latency_ms) 1.1 x its largest value over *all* eligible trials,
so every eligible trial counts, then mapped into the objective space (``log10(1.1 * max)``
for MACs and params). With no eligible trial the minimised coordinates are ``1.0`` before
the mapping (the hypervolume is 0 then anyway). To compare runs, compute one reference over
the records of all of them.

**Hypervolume** (``hypervolume``): the volume dominated by the points and bounded by the
reference point; a point that does not strictly beat the reference in every objective adds
nothing. Exact: a sweep in 1-D and 2-D, Optuna's WFG algorithm for 3 or more objectives.

**Knee** (``knee``): each objective is normalised to [0, 1] over the front (in the objective
space, oriented so that 0 is best). In 2-D the two extreme front points then sit at (0, 1)
and (1, 0), and the knee is the front point farthest from the straight line joining them on
the side of the ideal point (0, 0), i.e. the one with the smallest sum of normalised
objectives. With 3 or more objectives the same rule (smallest sum) is used. A front of one or
two points gives its best point in the first maximised objective (val_acc).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..dominance import dominates, non_dominated_sort, oriented, scale
from ..results import TrialRecord

DEFAULT_OBJECTIVES = (("val_acc", "maximize"), ("macs", "minimize"))


def eligible(records: Sequence[TrialRecord], metrics: Sequence[str],
             include_baselines: bool = False) -> list[TrialRecord]:
    """Records that may enter a front: trained, feasible, every metric present."""
    return [r for r in records
            if r.feasible_and_trained and (include_baselines or r.kind == "search")
            and all(r.value(m) is not None for m in metrics)]


def front(records: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]],
          include_baselines: bool = False) -> list[TrialRecord]:
    """The Pareto-optimal records (duplicates of one genome trained with one recipe,
    ``TrialRecord.key``, appear once), sorted by the last objective."""
    metrics = [m for m, _ in objectives]
    pool, seen = [], set()
    for r in eligible(records, metrics, include_baselines):
        if r.key not in seen:
            seen.add(r.key)
            pool.append(r)
    ranks = non_dominated_sort([[r.value(m) for m in metrics] for r in pool],
                               [d for _, d in objectives])
    best = [r for r, k in zip(pool, ranks) if k == 0]
    return sorted(best, key=lambda r: r.value(metrics[-1]))



def run_objectives(info: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(metric, direction)`` pairs of a run, from its ``run.yaml`` contents."""
    return [(m, d) for m, d in info.get("objectives") or DEFAULT_OBJECTIVES]


def accuracy_metric(objectives: Sequence[tuple[str, str]]) -> str:
    """The accuracy a run ranks by, and so the one it shows: its first maximised objective
    (``val_acc`` unless the space chose ``val_balanced_acc``, say)."""
    return next((m for m, d in objectives if d == "maximize"), "val_acc")


def objective_vector(record: TrialRecord, objectives: Sequence[tuple[str, str]]) -> list[float]:
    """A record's objective values in the objective space (see the module docstring)."""
    return [scale(m, record.value(m)) for m, _ in objectives]


def best_record(records: Sequence[TrialRecord], objective: tuple[str, str]) -> TrialRecord:
    """The record with the best value of one objective (ties: the earliest in ``records``)."""
    metric, direction = objective
    sign = -1.0 if direction == "maximize" else 1.0
    return min(records, key=lambda r: sign * r.value(metric))


def hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str],
                reference: Sequence[float]) -> float:
    """Exact hypervolume of ``points`` against ``reference`` (both in the same units and
    orientation as ``directions`` says); points not strictly better than the reference in
    every objective add nothing."""
    ref = oriented([reference], directions)[0]
    pts = [p for p in oriented(points, directions) if all(v < r for v, r in zip(p, ref))]
    # only the front adds volume; the slabs below cost about the cube of the points
    return _volume([p for p in pts if not any(dominates(q, p) for q in pts)], ref)


def _volume(pts: list[list[float]], ref: list[float]) -> float:
    """The volume that ``pts`` dominate below ``ref``, all minimised and strictly below it."""
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        volume, floor = 0.0, ref[1]
        for x, y in sorted(pts):  # each point that lowers the floor adds a strip
            if y < floor:
                volume += (ref[0] - x) * (floor - y)
                floor = y
        return volume
    # more objectives: slabs along the last one, each the volume of the points below it in
    # the others (exact; a front here has tens of points)
    pts = sorted(pts, key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        top = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if top > p[-1]:
            volume += (top - p[-1]) * _volume([q[:-1] for q in pts[:i + 1]], ref[:-1])
    return volume


def reference_point(records: Sequence[TrialRecord],
                    objectives: Sequence[tuple[str, str]]) -> list[float]:
    """The default reference point, in the objective space (see the module docstring)."""
    pool = eligible(records, [m for m, _ in objectives])
    ref = []
    for metric, direction in objectives:
        if direction == "maximize":
            ref.append(0.0)
        else:
            worst = max(r.value(metric) for r in pool) * 1.1 if pool else 1.0
            ref.append(scale(metric, worst))
    return ref


def hypervolume_history(records: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]],
                        reference: Sequence[float]) -> list[tuple[int, float]]:
    """``(finished search trials so far, hypervolume of the eligible ones)`` after each
    finished search trial, in file (finish) order. Trials that are not eligible (infeasible,
    failed, diverged) count as finished but add nothing."""
    metrics = [m for m, _ in objectives]
    directions = [d for _, d in objectives]
    points: list[list[float]] = []
    history: list[tuple[int, float]] = []
    volume = 0.0
    for r in records:
        if r.kind != "search":
            continue
        if eligible([r], metrics):
            points.append(objective_vector(r, objectives))
            volume = hypervolume(points, directions, reference)
        history.append((len(history) + 1, volume))
    return history


def knee(front_records: Sequence[TrialRecord],
         objectives: Sequence[tuple[str, str]]) -> TrialRecord:
    """The knee of a front (definition in the module docstring)."""
    if not front_records:
        raise ValueError("the front is empty: no knee")
    primary = next((o for o in objectives if o[1] == "maximize"), objectives[0])
    if len(front_records) <= 2:
        return best_record(front_records, primary)
    pts = np.asarray(oriented([objective_vector(r, objectives) for r in front_records],
                               [d for _, d in objectives]))
    low, span = pts.min(axis=0), np.ptp(pts, axis=0)
    norm_sum = ((pts - low) / np.where(span > 0, span, 1.0)).sum(axis=1)
    candidates = [r for r, s in zip(front_records, np.isclose(norm_sum, norm_sum.min())) if s]
    return best_record(candidates, primary)
