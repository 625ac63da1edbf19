"""Pareto analysis of a run: non-dominated sorting, hypervolume, knee point.

Only feasible, trained trials (status ``ok`` or ``reused``) ever enter a front; infeasible,
failed and diverged trials never do.
"""

from __future__ import annotations

from typing import Sequence

from .results import TrialRecord


def _oriented(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[tuple[float, ...]]:
    """Points turned into a minimisation problem (maximised objectives negated)."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    return [tuple(s * v for s, v in zip(signs, p)) for p in points]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Front rank of every point: 0 for the Pareto front, 1 for the next front, ..."""
    pts = _oriented(points, directions)
    n = len(pts)
    dominated_by = [0] * n
    dominates_list: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(pts[i], pts[j]):
                dominates_list[i].append(j)
                dominated_by[j] += 1
            elif dominates(pts[j], pts[i]):
                dominates_list[j].append(i)
                dominated_by[i] += 1
    rank = [-1] * n
    current = [i for i in range(n) if dominated_by[i] == 0]
    level = 0
    while current:
        nxt = []
        for i in current:
            rank[i] = level
            for j in dominates_list[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        current, level = nxt, level + 1
    return rank


def eligible(records: Sequence[TrialRecord], metrics: Sequence[str],
             include_baselines: bool = False) -> list[TrialRecord]:
    """Records that may enter a front: trained, feasible, every metric present."""
    return [r for r in records
            if r.feasible_and_trained and (include_baselines or r.kind == "search")
            and all(r.value(m) is not None for m in metrics)]


def front(records: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]],
          include_baselines: bool = False) -> list[TrialRecord]:
    """The Pareto-optimal records (duplicates of one genome appear once), sorted by the
    last objective."""
    metrics = [m for m, _ in objectives]
    pool, seen = [], set()
    for r in eligible(records, metrics, include_baselines):
        if r.hash not in seen:
            seen.add(r.hash)
            pool.append(r)
    ranks = non_dominated_sort([[r.value(m) for m in metrics] for r in pool],
                               [d for _, d in objectives])
    best = [r for r, k in zip(pool, ranks) if k == 0]
    return sorted(best, key=lambda r: r.value(metrics[-1]))
