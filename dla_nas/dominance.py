"""Pareto dominance over objective vectors: non-dominated sorting and crowding distance.

Pure functions on plain sequences, shared by the search (early stopping ranks the trials at a
rung) and by the analysis (fronts, confirmed fronts). ``directions`` holds ``"maximize"`` or
``"minimize"`` per objective. Costs are compared in the objective space that the plots and
the hypervolume use: MACs and params as log10 (``scale``).
"""

from __future__ import annotations

import math
from typing import Sequence

LOG_METRICS = ("macs", "params")  # measured (and plotted) as log10


def scale(metric: str, value: float) -> float:
    """A metric value in the objective space (log10 for MACs and params)."""
    return math.log10(value) if metric in LOG_METRICS else float(value)


def oriented(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[tuple[float, ...]]:
    """Points turned into a minimisation problem (maximised objectives negated)."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    return [tuple(s * v for s, v in zip(signs, p)) for p in points]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Front rank of every point: 0 for the Pareto front, 1 for the next front, ..."""
    pts = oriented(points, directions)
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


def crowding_distance(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance of each point among ``points`` (one front): per objective,
    the gap between its two neighbours over the objective's range, summed; the extremes of
    each objective get infinity, so a front's ends are always kept."""
    n = len(points)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for k in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][k])
        low, high = points[order[0]][k], points[order[-1]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for prev, i, nxt in zip(order, order[1:], order[2:]):
            distance[i] += (points[nxt][k] - points[prev][k]) / (high - low)
    return distance
