"""Plots of one or more runs: the accuracy/cost Pareto front, hypervolume over trials, and an
interactive (self-contained SVG) version of the front.

What is drawn:

- every eligible search trial (trained, feasible; see ``pareto.eligible``), one colour per
  run; dominated ones faded;
- each run's front of the plotted pair (``y`` maximised, ``x`` minimised; the run's own front
  when its objectives are that pair) as a step line: at each cost, the best accuracy reached
  so far; its knee (``pareto.knee``) ringed in red;
- baselines as black stars with their names;
- search trials with a cost but no accuracy (infeasible, failed, diverged) as small grey x's
  on a strip at the bottom of the plot, so that the constraint boundary shows;
- trials stopped early at a rung as hollow grey triangles at their accuracy there (they
  never enter a front);
- candidates confirmed with ``dla-nas confirm`` as diamonds at their mean **test** accuracy
  over seeds, with bars from the lowest to the highest seed (search trials in the run's
  colour, baselines in black), beside the proxy points; the confirmed search candidates'
  front (on mean test accuracy) as a dashed step line, and the confirmed baselines joined in
  order of cost as a dashed black line (the hand-designed line);
- MACs and params on a log axis.

With ``by`` (``dla-nas pareto --by``), the search trials are coloured by a property of their
genome (``ablation``) instead of by run; each run then has its own marker, and its lines are
grey.

Hypervolumes use the run's own objectives from ``run.yaml`` and one reference point computed
over all plotted runs (``pareto.reference_point``), so the curves of several runs (samplers)
are comparable.
"""

from __future__ import annotations

import html
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch.backbone_genome import BackboneGenome, genome_from_dict
from ..dominance import LOG_METRICS, non_dominated_sort
from ..errors import OptionError, RunError
from ..files import staged_folder, write_file
from ..results import RunStore, TrialRecord, load_run
from .ablation import BY, GLYPHS, Colouring, genome_property, run_style, svg_point
from .confirm import Confirmed, load_confirmed
from .pareto import (
    accuracy_metric,
    eligible,
    front,
    hypervolume_history,
    knee,
    reference_point,
    run_objectives,
)

X_METRICS = ("macs", "params", "latency_ms")
Y_METRICS = ("val_acc", "val_balanced_acc", "val_miou")
AXIS_LABELS = {
    "macs": "MACs (multiply-accumulates, log scale)",
    "params": "params (log scale)",
    "latency_ms": "latency (ms, CPU, batch 1)",
    "val_acc": "validation accuracy (proxy)",
    "val_balanced_acc": "validation balanced accuracy (proxy)",
    "val_miou": "validation mIoU (proxy)",
}
TEST_LABELS = {"val_acc": "test accuracy", "val_balanced_acc": "test balanced accuracy",
               "val_miou": "test mIoU"}
SHORT_NAMES = {"macs": "MACs", "params": "params", "latency_ms": "latency ms",
               "val_acc": "val_acc", "val_balanced_acc": "balanced acc", "val_miou": "mIoU"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
COST_ONLY_COLOUR = "#888888"


@dataclass
class RunPlot:
    """One run as the plots see it."""

    path: Path
    info: dict[str, Any]
    records: list[TrialRecord]
    colour: str
    marker: str = "o"  # its trials' marker (and its glyph in pareto.html): one per run with --by
    points: list[TrialRecord] = field(default_factory=list)  # eligible search trials
    front: list[TrialRecord] = field(default_factory=list)  # of the plotted pair, by cost
    knee: TrialRecord | None = None
    history: list[tuple[int, float]] = field(default_factory=list)
    confirmed: list[Confirmed] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def objectives(self) -> list[tuple[str, str]]:
        return run_objectives(self.info)

    @property
    def sampler(self) -> str:
        """The sampler the run used, as ``run.yaml`` records it."""
        return str(self.info.get("sampler", "?"))

    @property
    def search(self) -> list[TrialRecord]:
        return [r for r in self.records if r.kind == "search"]

    @property
    def task(self) -> str:
        space = self.info.get("space") or {}
        task = space.get("task") or {}
        res = f" @ {task['resolution']} px" if task.get("resolution") else ""
        return f"{space.get('name', '?')}: {task.get('dataset', '?')}{res}"


def plot_pareto(runs: list[Path], x: str = "macs", y: str | None = None, *,
                out: Path, by: str | None = None) -> dict[str, Any]:
    """Write ``pareto.png``, ``hypervolume.png`` and ``pareto.html`` for ``runs`` into ``out``;
    return each run's front of (``y``, ``x``), knee and final hypervolume. ``y`` defaults to
    the first run's maximised objective; ``by`` (one of ``ablation.BY``) colours the search
    trials by that property of their genome."""
    if y is None and runs:
        info = RunStore(Path(runs[0])).info()
        y = accuracy_metric(run_objectives(info))
    if x not in X_METRICS:
        raise OptionError(f"--x: {x!r} is not allowed (one of {', '.join(X_METRICS)})")
    if y not in Y_METRICS:
        raise OptionError(f"--y: {y!r} is not allowed (one of {', '.join(Y_METRICS)})")
    if by is not None and by not in BY:
        raise OptionError(f"--by: {by!r} is not allowed (one of {', '.join(BY)})")
    if not runs:
        raise RunError("no run folder given (one or more results/<run> folders)")
    loaded = [_load(Path(p), x, y, *run_style(i, by, COLOURS)) for i, p in enumerate(runs)]
    objectives = loaded[0].objectives
    for run in loaded[1:]:
        if run.objectives != objectives:
            raise RunError(f"{run.path}: objectives {run.objectives} differ from "
                           f"{loaded[0].path}'s {objectives}; plot runs of one kind together")
    pair = [(y, "maximize"), (x, "minimize")]
    reference = reference_point([r for run in loaded for r in run.records], objectives)
    for run in loaded:
        run.points = eligible(run.records, [y, x])
        run.front = front(run.records, pair)
        run.knee = knee(run.front, pair) if run.front else None
        run.history = hypervolume_history(run.records, objectives, reference)
    colouring = Colouring.of(by, [r.genome for run in loaded for r in run.points],
                             COLOURS) if by else None
    out = Path(out)
    with staged_folder(out) as stage:  # the three files together, or none (a full disk)
        _pareto_png(loaded, x, y, stage / "pareto.png", colouring)
        _hypervolume_png(loaded, objectives, reference, stage / "hypervolume.png")
        write_file(stage / "pareto.html", _pareto_html(loaded, x, y, colouring))
    files = {"pareto_png": out / "pareto.png", "hypervolume_png": out / "hypervolume.png",
             "pareto_html": out / "pareto.html"}
    chance = chance_level(loaded[0].info, y)
    return {"x": x, "y": y, "objectives": [list(o) for o in objectives],
            "chance": list(chance) if chance else None,
            "reference": reference, "files": {k: str(v) for k, v in files.items()},
            "runs": [_summary(run, x, y) for run in loaded],
            "by": {"property": by, "counts": {v: n for v, n, _ in colouring.entries}}
            if colouring else None}


def _summary(run: RunPlot, x: str, y: str) -> dict[str, Any]:
    """The front table of one run, for printing."""
    return {
        "run": str(run.path),
        "sampler": run.sampler,
        "finished_search_trials": len(run.search),
        "eligible_trials": len(run.points),
        "front": [{"trial": r.trial, "hash": r.hash, "val_acc": r.val_acc, y: r.value(y),
                   "macs": r.macs, "params": r.params} for r in run.front],
        "knee": run.knee.trial if run.knee else None,
        "hypervolume": run.history[-1][1] if run.history else 0.0,
        "note": "" if run.points else
        f"no eligible trials (none trained within the constraints with {y} and {x})",
    }


# ---- data -----------------------------------------------------------------------------------
def _load(path: Path, x: str, y: str, colour: str, marker: str) -> RunPlot:
    info = RunStore(path).info()
    records = load_run(path)
    if not records:
        raise RunError(f"{path}: has no finished trials (trials.jsonl is empty)")
    if not any(r.value(x) is not None for r in records):
        raise RunError(f"--x: {path} has no {x} values (its objectives are "
                       f"{', '.join(m for m, _ in run_objectives(info))})")
    if y == "val_miou" and info.get("data", {}).get("task") != "dense":  # else empty plots
        raise RunError(f"--y: {path} is a run of classifiers, without val_miou (a dense "
                       "run's metric)")
    return RunPlot(path, info, records, colour, marker, confirmed=load_confirmed(path))


def _baselines(runs: list[RunPlot], x: str, y: str) -> list[tuple[TrialRecord, RunPlot]]:
    """Trained baselines of all runs with the run each comes from, each (name, x, y) once."""
    seen, out = set(), []
    for run in runs:
        for r in eligible(run.records, [y, x], include_baselines=True):
            key = (r.name, r.value(x), r.value(y))
            if r.kind == "baseline" and key not in seen:
                seen.add(key)
                out.append((r, run))
    return out


def _cost_only(run: RunPlot, x: str) -> list[TrialRecord]:
    """Search trials with a cost but no eligible accuracy (infeasible, failed, diverged)."""
    ok = {id(r) for r in run.points} | {id(r) for r in _stopped(run)}
    return [r for r in run.search if id(r) not in ok and r.value(x) is not None]


def _stopped(run: RunPlot) -> list[TrialRecord]:
    """Search trials that early stopping ended at a rung, with their accuracy there."""
    return [r for r in run.search if r.stopped_rung is not None and r.status in ("ok", "reused")]


def _y_range(runs: list[RunPlot], baselines: list[tuple[TrialRecord, RunPlot]], y: str
             ) -> tuple[float, float, float]:
    """(bottom, top, strip_top): the y-axis limits; [bottom, strip_top] is the strip at the
    bottom that holds the trials without an accuracy."""
    values = [r.value(y) for run in runs for r in run.points] + [r.value(y) for r, _ in baselines]
    values += [r.value(y) for run in runs for r in _stopped(run) if r.value(y) is not None]
    values += [_confirmed_y(c, y)[i] for run in runs for c in run.confirmed for i in (1, 2)]
    if not values:
        return 0.0, 1.0, 0.1
    low, high = min(values), max(values)
    pad = 0.08 * (high - low) if high > low else 0.05
    return low - 3 * pad, high + pad, low - pad


def _title(runs: list[RunPlot]) -> str:
    return "Pareto front, " + "; ".join(sorted({run.task for run in runs}))


def _tooltip(r: TrialRecord, run: RunPlot, by: str | None = None) -> str:
    """Hash, trial, metrics and the genome's main fields (and its ``by`` property), one per
    line."""
    lines = [r.hash, f"trial {r.trial} ({r.status}{', ' + r.name if r.name else ''}) "
             f"in {run.label}"]
    for metric in dict.fromkeys((accuracy_metric(run.objectives), "val_acc")):
        if r.value(metric) is not None:  # the run's ranking accuracy first
            lines.append(f"{metric} {r.value(metric):.4f}")
    if r.stopped_rung is not None:
        lines.append(f"stopped early after epoch {r.stopped_rung}")
    lines += [f"{SHORT_NAMES[m]} {r.value(m):,}" for m in LOG_METRICS if r.value(m) is not None]
    if r.latency_ms is not None:
        lines.append(f"latency {r.latency_ms:.2f} ms")
    if r.genome:
        genome = genome_from_dict(r.genome)
        if isinstance(genome, BackboneGenome):
            lines.append(genome.describe())
        else:
            lines.append(f"block {genome.block}")
            lines.append("stages " + ", ".join(
                f"tree d{st.depth} fan{st.fan_in}" if st.is_tree else f"chain x{st.blocks}"
                for st in genome.stages))
        if by:
            lines.append(f"{by}: {genome_property(r.genome, by)}")
    if r.violations:
        lines.append("over " + ", ".join(f"{k} by {v:.0%}" for k, v in r.violations.items()))
    return "\n".join(lines)


def _si(value: float) -> str:
    """1234567 -> '1.23M' (axis ticks)."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _log_minor_label(value: float, _pos: int | None = None) -> str:
    """Label the 2x and 5x minor ticks of a log axis, leave the others blank."""
    mantissa = round(value / 10 ** math.floor(math.log10(value)))
    return _si(value) if mantissa in (2, 5) else ""


# ---- pareto.png -----------------------------------------------------------------------------
def _colours(records: list[TrialRecord], run: RunPlot,
             colouring: Colouring | None) -> str | list[str]:
    """The points' colour: the run's, or each one's by its genome property."""
    if colouring is None:
        return run.colour
    return [colouring.colour(r.genome, run.colour) for r in records]


def _pareto_png(runs: list[RunPlot], x: str, y: str, path: Path,
                colouring: Colouring | None = None) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    several = len(runs) > 1
    baselines = _baselines(runs, x, y)
    bottom, top, strip_top = _y_range(runs, baselines, y)
    strip = (bottom + strip_top) / 2
    for run in runs:
        tag = f"{run.label}: " if several else ""
        on_front = {r.key for r in run.front}
        dominated = [r for r in run.points if r.key not in on_front]
        best = [r for r in run.points if r.key in on_front]
        by_run = colouring is None  # else the legend has a colour per property value
        if dominated:
            ax.scatter([r.value(x) for r in dominated], [r.value(y) for r in dominated], s=28,
                       marker=run.marker, color=_colours(dominated, run, colouring), alpha=0.3,
                       label=f"{tag}dominated trials" if by_run else None)
        ax.scatter([r.value(x) for r in best], [r.value(y) for r in best], s=42,
                   marker=run.marker, color=_colours(best, run, colouring), edgecolors="black",
                   linewidths=0.6, zorder=3,
                   label=f"{tag}Pareto front ({len(run.front)})" if by_run else None)
        if not by_run:  # the run's marker and line; the property's colours have their entries
            ax.plot([], [], marker=run.marker, color=run.colour, mfc="white", mec="black",
                    label=f"{tag}Pareto front ({len(run.front)}, outlined; dominated faded)")
        if run.knee:
            xs = [r.value(x) for r in run.front] + [max(r.value(x) for r in run.points)]
            ys = [r.value(y) for r in run.front]
            ax.step(xs, ys + ys[-1:], where="post", color=run.colour, lw=1.5, zorder=2)
            ax.scatter([run.knee.value(x)], [run.knee.value(y)], s=180, facecolors="none",
                       edgecolors="red", linewidths=1.5, zorder=4,
                       label=f"{tag}knee (trial {run.knee.trial})")
    for value, count, colour in colouring.entries if colouring else ():
        ax.plot([], [], "o", color=colour, label=f"{colouring.by}: {value} ({count})")
    stopped = [r for run in runs for r in _stopped(run)
               if r.value(x) is not None and r.value(y) is not None]
    if stopped:
        ax.scatter([r.value(x) for r in stopped], [r.value(y) for r in stopped], marker="v",
                   s=22, facecolors="none", edgecolors=COST_ONLY_COLOUR, linewidths=1,
                   label="stopped early (accuracy at its rung)")
    cost_only = [r for run in runs for r in _cost_only(run, x)]
    if cost_only:
        ax.scatter([r.value(x) for r in cost_only], [strip] * len(cost_only), marker="x",
                   s=22, color=COST_ONLY_COLOUR, linewidths=1,
                   label="infeasible/failed (no accuracy)")
        ax.axhspan(bottom, strip_top, color="#eeeeee", zorder=0)
        ax.text(0.01, (strip - bottom) / (top - bottom), "no accuracy", fontsize=8,
                color="#555555", va="center", transform=ax.transAxes)
    if baselines:
        ax.scatter([r.value(x) for r, _ in baselines], [r.value(y) for r, _ in baselines],
                   marker="*", s=170, color="black", zorder=5, label="baselines (same proxy)")
        for r, _ in baselines:
            ax.annotate(r.name, (r.value(x), r.value(y)), xytext=(7, -3),
                        textcoords="offset points", fontsize=9)
    if x in ("macs", "params"):
        _confirmed_points(ax, runs, x, y, several)
        _confirmed_lines(ax, runs, x, y, several)
    ax.set_ylim(bottom, top)
    if x in LOG_METRICS:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _si(v)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_log_minor_label))
    ax.set_xlabel(AXIS_LABELS[x])
    chance = chance_level(runs[0].info, y)
    if chance is not None and bottom < chance[0] < top:
        ax.axhline(chance[0], color="#999999", linestyle=":", linewidth=1, label=chance[1])
    ylabel = AXIS_LABELS[y]
    if any(run.confirmed for run in runs):  # the test figure that matches y (_confirmed_y)
        ylabel += f";\ndiamonds: {TEST_LABELS[y]} (confirmed)"  # two lines: it fits
    ax.set_ylabel(ylabel)
    ax.set_title("\n".join(textwrap.wrap(_title(runs), 60)), fontsize=10)  # long folder paths
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def chance_level(info: dict[str, Any], y: str) -> tuple[float, str] | None:
    """What a model that learnt nothing scores on ``y``, and its legend label, from a run's
    run.yaml: always answering the largest val class (plain accuracy, when the data report
    gives the val counts), else a guess among the classes (1 / classes, which is balanced
    accuracy's chance level whatever the class sizes); None when run.yaml does not say, and
    for masks (a pixel's chance depends on the classes' pixel shares, which it does not keep)."""
    data = info.get("data") or {}
    if data.get("task") == "dense":
        return None
    val = ((data.get("report") or {}).get("counts") or {}).get("val") or {}
    if y == "val_acc" and sum(val.values()) > 0:
        return max(val.values()) / sum(val.values()), "always the largest class"
    classes = data.get("num_classes")
    if isinstance(classes, int) and classes > 1:
        return 1 / classes, f"chance (1 of {classes} classes)"
    return None


def _confirmed_y(c: Confirmed, y: str) -> tuple[float, float, float]:
    """The confirmed test figure that matches the plotted validation metric."""
    return c.test(y)


def _confirmed_points(ax, runs: list[RunPlot], x: str, y: str, several: bool) -> None:
    """Confirmed candidates: mean test accuracy (balanced when ``y`` is), with a bar from the
    lowest to the highest seed; search trials in the run's colour, baselines in black."""
    for run in runs:
        tag = f"{run.label}: " if several else ""
        for kind, colour in (("search", run.colour), ("baseline", "black")):
            points = [c for c in run.confirmed if c.kind == kind]
            if not points:
                continue
            spreads = [_confirmed_y(c, y) for c in points]
            means = [s[0] for s in spreads]
            ax.errorbar([getattr(c, x) for c in points], means,
                        yerr=[[s[0] - s[1] for s in spreads], [s[2] - s[0] for s in spreads]],
                        fmt="D", ms=6, color=colour, mfc="white", capsize=3, lw=1, zorder=6,
                        label=f"{tag}{'confirmed trials' if kind == 'search' else 'confirmed baselines'}"
                              f" (test, {len(points[0].seeds)} seeds)")
            for i, (c, mean) in enumerate(sorted(zip(points, means), key=lambda p: getattr(p[0], x))):
                # neighbours in cost alternate above and below, so level labels do not overlap
                ax.annotate(c.label, (getattr(c, x), mean), xytext=(6, 4 if i % 2 == 0 else -11),
                            textcoords="offset points", fontsize=7, color=colour)


def _confirmed_front(points: list[Confirmed], x: str, y: str) -> list[Confirmed]:
    """The confirmed candidates that no other beats on both mean test accuracy and ``x``,
    sorted by ``x``."""
    ranks = non_dominated_sort([(_confirmed_y(c, y)[0], getattr(c, x)) for c in points],
                               ["maximize", "minimize"])
    return sorted((c for c, k in zip(points, ranks) if k == 0), key=lambda c: getattr(c, x))


def _confirmed_lines(ax, runs: list[RunPlot], x: str, y: str, several: bool) -> None:
    """Each run's confirmed front of its search candidates (a dashed step line in the run's
    colour) and its confirmed baselines joined in order of ``x`` (the hand-designed line,
    dashed black)."""
    for run in runs:
        tag = f"{run.label}: " if several else ""
        search = [c for c in run.confirmed if c.kind == "search"]
        if search:
            best = _confirmed_front(search, x, y)
            ys = [_confirmed_y(c, y)[0] for c in best]
            ax.step([getattr(c, x) for c in best] + [max(getattr(c, x) for c in search)],
                    ys + ys[-1:], where="post", color=run.colour, ls="--", lw=1.3, zorder=5,
                    label=f"{tag}confirmed front ({len(best)}, mean test)")
        hand = sorted((c for c in run.confirmed if c.kind == "baseline"),
                      key=lambda c: getattr(c, x))
        if len(hand) > 1:
            ax.plot([getattr(c, x) for c in hand], [_confirmed_y(c, y)[0] for c in hand],
                    color="black", ls="--", lw=1, zorder=5,
                    label=f"{tag}hand-designed line (confirmed baselines, mean test)")


# ---- hypervolume.png ------------------------------------------------------------------------
def _hypervolume_png(runs: list[RunPlot], objectives: list[tuple[str, str]],
                     reference: list[float], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for run in runs:
        ax.plot([n for n, _ in run.history], [v for _, v in run.history],
                drawstyle="steps-post", marker="o", markersize=3, color=run.colour, lw=1.6,
                label=f"{run.label} ({run.sampler})")
    space = " x ".join(("log10 " if m in LOG_METRICS else "") + SHORT_NAMES[m]
                       for m, _ in objectives)
    ref = ", ".join(f"{SHORT_NAMES[m]} {_si(10 ** v) if m in LOG_METRICS else f'{v:g}'}"
                    for (m, _), v in zip(objectives, reference))
    ax.set_xlabel("finished search trials")
    ax.set_ylabel(f"hypervolume ({space})")
    ax.set_title(f"Hypervolume of the eligible trials (reference: {ref})", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.35)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


# ---- pareto.html ----------------------------------------------------------------------------
W, H = 900, 600
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 60, 60


def _pareto_html(runs: list[RunPlot], x: str, y: str, colouring: Colouring | None = None
                 ) -> str:
    """A self-contained page: an SVG scatter with a tooltip (``<title>``) on every point."""
    log = x in LOG_METRICS
    baselines = _baselines(runs, x, y)
    bottom, top, strip_top = _y_range(runs, baselines, y)
    xs = [r.value(x) for run in runs for r in run.records if r.value(x) is not None]
    lo, hi = (math.log10(min(xs)), math.log10(max(xs))) if log else (min(xs), max(xs))
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    lo, hi = lo - pad, hi + pad

    def px(v: float) -> float:
        return LEFT + ((math.log10(v) if log else v) - lo) / (hi - lo) * (W - LEFT - RIGHT)

    def py(v: float) -> float:
        return TOP + (top - v) / (top - bottom) * (H - TOP - BOTTOM)

    def tip(r: TrialRecord, run: RunPlot) -> str:
        by = colouring.by if colouring else None
        return f"<title>{html.escape(_tooltip(r, run, by))}</title>"

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
           'fill="white" stroke="#333"/>']
    for v in _ticks(lo, hi, log):
        svg.append(f'<line x1="{px(v):.1f}" y1="{TOP}" x2="{px(v):.1f}" y2="{H - BOTTOM}" '
                   f'stroke="#ddd"/><text x="{px(v):.1f}" y="{H - BOTTOM + 16}" '
                   f'text-anchor="middle">{_si(v)}</text>')
    if any(_cost_only(run, x) for run in runs):
        svg.append(f'<rect x="{LEFT}" y="{py(strip_top):.1f}" width="{W - LEFT - RIGHT}" '
                   f'height="{py(bottom) - py(strip_top):.1f}" fill="#eeeeee"/>'
                   f'<text x="{LEFT + 6}" y="{py(strip_top) + 14:.1f}" fill="#555" '
                   'font-size="10">no accuracy</text>')
    for v in _ticks(strip_top, top, False):
        svg.append(f'<line x1="{LEFT}" y1="{py(v):.1f}" x2="{W - RIGHT}" y2="{py(v):.1f}" '
                   f'stroke="#ddd"/><text x="{LEFT - 6}" y="{py(v) + 4:.1f}" '
                   f'text-anchor="end">{v:.3g}</text>')
    svg.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 15}" text-anchor="middle">'
               f'{html.escape(AXIS_LABELS[x])}</text>')
    svg.append(f'<text transform="translate(18 {(TOP + H - BOTTOM) / 2}) rotate(-90)" '
               f'text-anchor="middle">{html.escape(AXIS_LABELS[y])}</text>')
    svg.append(f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">'
               f'{html.escape(_title(runs))}</text>')
    for i, run in enumerate(runs):
        svg.append(f'<text x="{LEFT + 4 + 220 * i}" y="46" fill="{run.colour}">'
                   f'{dict(GLYPHS)[run.marker]} '
                   f'{html.escape(run.label)} ({html.escape(run.sampler)})</text>')
        if run.front:
            corners = [(px(r.value(x)), py(r.value(y))) for r in run.front]
            d = f"M{corners[0][0]:.1f},{corners[0][1]:.1f}"
            d += "".join(f" H{cx:.1f} V{cy:.1f}" for cx, cy in corners[1:])
            d += f" H{px(max(r.value(x) for r in run.points)):.1f}"
            svg.append(f'<path d="{d}" fill="none" stroke="{run.colour}" stroke-width="1.5"/>')
        on_front = {r.key for r in run.front}
        for r in run.points:
            best = r.key in on_front
            ring = (' stroke="red" stroke-width="2"' if run.knee and r.trial == run.knee.trial
                    else ' stroke="black" stroke-width="0.6"' if best else "")
            fill = colouring.colour(r.genome, run.colour) if colouring else run.colour
            svg.append(svg_point(run.marker, px(r.value(x)), py(r.value(y)), 6 if best else 5,
                                 f'class="trial" fill="{fill}" '
                                 f'fill-opacity="{1.0 if best else 0.3}"{ring}', tip(r, run)))
        for r in _stopped(run):  # at their accuracy at the rung: hollow, never on a front
            if r.value(x) is not None and r.value(y) is not None:
                svg.append(svg_point("v", px(r.value(x)), py(r.value(y)), 5,
                                     f'class="stopped" fill="none" stroke="{COST_ONLY_COLOUR}" '
                                     'stroke-width="1.2"', tip(r, run)))
        for r in _cost_only(run, x):
            cx, cy = px(r.value(x)), py((bottom + strip_top) / 2)
            svg.append(f'<path class="cost-only" d="M{cx - 3:.1f},{cy - 3:.1f} l6,6 m0,-6 l-6,6" '
                       f'stroke="{COST_ONLY_COLOUR}" stroke-width="1.5">{tip(r, run)}</path>')
    for r, run in baselines:
        cx, cy = px(r.value(x)), py(r.value(y))
        star = " ".join(f"{cx + rad * math.sin(a * math.pi / 5):.1f},"
                        f"{cy - rad * math.cos(a * math.pi / 5):.1f}"
                        for a, rad in ((a, 8.0 if a % 2 == 0 else 3.5) for a in range(10)))
        svg.append(f'<polygon class="baseline" points="{star}" fill="black">{tip(r, run)}'
                   f'</polygon><text x="{cx + 10:.1f}" y="{cy + 4:.1f}">'
                   f'{html.escape(r.name)}</text>')
    svg.append("</svg>")
    rows = "".join(
        f"<tr><td>{html.escape(run.label)}</td><td>{r.trial}</td><td><code>{r.hash}</code></td>"
        f"<td>{r.value(y):.4f}</td><td>{r.value(x):,}</td>"
        f"<td>{'knee' if r is run.knee else ''}</td></tr>"
        for run in runs for r in run.front)
    notes = "".join(f"<p>{html.escape(run.label)}: no eligible trials (none trained within "
                    "the constraints).</p>" for run in runs if not run.points)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(_title(runs))}</title><style>"
            "body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head>"
            "<body>\n" + "\n".join(svg) +
            (colouring.legend_html() if colouring else "") +
            "\n<p>Hover a point for its genome hash and fields. Faded: dominated; outlined: "
            "Pareto front; red ring: knee; hollow grey triangles: stopped early at a rung (their "
            "accuracy there; never on a front); grey x (bottom strip): infeasible, failed or "
            "diverged (no accuracy); black stars: baselines.</p>" + notes +
            "<table><tr><th>run</th><th>trial</th><th>hash</th>"
            f"<th>{html.escape(SHORT_NAMES[y])}</th><th>{html.escape(SHORT_NAMES[x])}</th>"
            f"<th></th></tr>{rows}</table>\n</body></html>\n")


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Tick values inside [lo, hi]: 1-2-5 steps (``lo``/``hi`` are log10 values when ``log``)."""
    if log:
        mantissas = (1,) if hi - lo > 3 else (1, 2, 5)
        return [m * 10.0 ** d for d in range(math.floor(lo), math.ceil(hi) + 1)
                for m in mantissas if lo <= math.log10(m * 10.0 ** d) <= hi]
    raw = (hi - lo) / 6
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)),
               key=lambda st: abs(st - raw))
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
