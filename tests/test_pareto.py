"""Pareto fronts, hypervolume, knee, and the plots of a run (pareto.py, plots.py)."""

import itertools
import math
import random
import re
from pathlib import Path

import conftest
import numpy as np
import pytest
from matplotlib.figure import Figure

from dla_nas.analysis.ablation import aggregation, block, ida, value_counts
from dla_nas.analysis.confirm import CONFIRM_FILE, ConfirmRecord, ConfirmStore
from dla_nas.analysis.pareto import front, hypervolume, hypervolume_history, knee, reference_point
from dla_nas.analysis.plots import COLOURS, plot_pareto
from dla_nas.arch import zoo
from dla_nas.arch.genome import Genome
from dla_nas.cli import main
from dla_nas.errors import OptionError, RunError
from dla_nas.results import RunStore, TrialRecord

ACC_MACS = [("val_acc", "maximize"), ("macs", "minimize")]
GENOME = {"stem": {"kernel": 3, "levels": [{"channels": 8}]},
          "stages": [{"channels": 16, "depth": 2, "fan_in": 3}, {"channels": 32}],
          "block": "basic"}


def rec(trial, acc, macs, params=1000, status="ok", kind="search", hash_=None, genome=GENOME,
        **kw):
    return TrialRecord(trial=trial, status=status, hash=hash_ or f"h{trial:011d}", kind=kind,
                       val_acc=acc, macs=macs, params=params, genome=genome, **kw)


def brute_force_front(points):
    """Indices of the points no other point dominates (all objectives minimised)."""
    return {i for i, p in enumerate(points)
            if not any(all(a <= b for a, b in zip(q, p)) and q != p for q in points)}


# ---- fronts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_front_equals_brute_force_in_2d_and_3d(seed):
    rng = random.Random(seed)
    records = [rec(i, round(rng.random(), 1), rng.randint(1, 12) * 1000, rng.randint(1, 9))
               for i in range(60)]
    minimised = [(-r.val_acc, r.macs) for r in records]
    assert {r.trial for r in front(records, ACC_MACS)} == brute_force_front(minimised)
    three = ACC_MACS + [("params", "minimize")]
    minimised3 = [(-r.val_acc, r.macs, r.params) for r in records]
    assert {r.trial for r in front(records, three)} == brute_force_front(minimised3)


def test_infeasible_failed_diverged_never_enter_the_front_even_when_they_would_dominate():
    records = [rec(0, 0.8, 5000), rec(1, 0.7, 2000),
               rec(2, 0.99, 10, status="infeasible"), rec(3, 0.99, 10, status="failed"),
               rec(4, 0.99, 10, status="diverged"),
               rec(-1, 0.99, 10, kind="baseline")]
    assert [r.trial for r in front(records, ACC_MACS)] == [1, 0]
    assert -1 in {r.trial for r in front(records, ACC_MACS, include_baselines=True)}


def test_a_reused_duplicate_appears_once():
    records = [rec(0, 0.8, 5000, hash_="aaaaaaaaaaaa"), rec(1, 0.7, 2000),
               rec(2, 0.8, 5000, status="reused", hash_="aaaaaaaaaaaa", reused_from=0)]
    assert [r.trial for r in front(records, ACC_MACS)] == [1, 0]


# ---- hypervolume ----------------------------------------------------------------------------
def test_2d_hypervolume_equals_a_hand_computation():
    points = [(0.9, 4.0), (0.6, 2.0), (0.3, 1.0),  # the front
              (0.5, 5.0),                          # dominated: adds nothing
              (0.95, 12.0), (0.0, 3.0)]            # not strictly better than the reference
    # as minimisation, (-acc, cost) against (0, 10): three strips, sorted by -acc
    hand = 0.9 * (10 - 4) + 0.6 * (4 - 2) + 0.3 * (2 - 1)
    assert hypervolume(points, ["maximize", "minimize"], [0.0, 10.0]) == pytest.approx(hand)
    assert hypervolume([], ["maximize", "minimize"], [0.0, 10.0]) == 0.0


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_equals_a_count_of_grid_cells(dims):
    """On integer points below a reference of 6, the volume is the number of unit cells
    that some point dominates (counted apart, with no sweep)."""
    rng = np.random.default_rng(dims)
    for _ in range(10):
        pts = rng.integers(0, 6, size=(8, dims))
        cells = itertools.product(range(6), repeat=dims)
        count = sum(any((p <= c).all() for p in pts) for c in map(np.array, cells))
        ours = hypervolume(pts.tolist(), ["minimize"] * dims, [6] * dims)
        assert ours == pytest.approx(count)


def test_3d_hypervolume_of_known_boxes():
    directions = ["maximize"] * 3
    assert hypervolume([(1, 1, 1)], directions, [0, 0, 0]) == pytest.approx(1.0)
    # a second box 0.5 x 0.5 x 2 overlaps the unit cube in 0.5 x 0.5 x 1
    assert hypervolume([(1, 1, 1), (0.5, 0.5, 2)], directions, [0, 0, 0]) == pytest.approx(1.25)
    # a point on the reference in one objective adds nothing
    assert hypervolume([(1, 1, 1), (0, 5, 5)], directions, [0, 0, 0]) == pytest.approx(1.0)
    assert hypervolume([(0.2, 0.2, 0.2)], ["minimize"] * 3, [1, 1, 1]) == pytest.approx(0.512)


def test_reference_point_uses_log_cost_over_eligible_trials_only():
    records = [rec(0, 0.8, 5000), rec(1, 0.7, 2000), rec(2, None, 10**9, status="infeasible")]
    assert reference_point(records, ACC_MACS) == pytest.approx([0.0, math.log10(5500)])


def test_hypervolume_history_counts_every_finished_search_trial_and_never_falls():
    records = [rec(-1, 0.99, 10, kind="baseline"), rec(0, 0.5, 8000),
               rec(1, None, 9000, status="infeasible"), rec(2, 0.7, 3000),
               rec(3, None, 2000, status="failed"), rec(4, 0.6, 9000), rec(5, 0.9, 1000)]
    ref = reference_point(records, ACC_MACS)
    history = hypervolume_history(records, ACC_MACS, ref)
    assert [n for n, _ in history] == [1, 2, 3, 4, 5, 6]
    values = [v for _, v in history]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[1] == values[0] and values[-1] > values[-2]
    final = hypervolume([(r.val_acc, math.log10(r.macs)) for r in records[1:] if r.val_acc],
                        ["maximize", "minimize"], ref)
    assert values[-1] == pytest.approx(final)


# ---- knee -----------------------------------------------------------------------------------
def test_knee_of_a_convex_front():
    # log10 MACs 3..7 normalise to 0, .25, .5, .75, 1; accuracy (0.95 - acc) / 0.45 to
    # 1, .333, .111, .044, 0: sums 1, .583, .611, .794, 1 -> trial 1 is farthest from the
    # line joining the extremes
    records = [rec(i, acc, 10 ** (i + 3)) for i, acc in enumerate([0.5, 0.8, 0.9, 0.93, 0.95])]
    f = front(records, ACC_MACS)
    assert len(f) == 5 and knee(f, ACC_MACS).trial == 1


def test_knee_of_a_short_front_is_its_most_accurate_point():
    records = [rec(0, 0.7, 1000), rec(1, 0.9, 5000)]
    assert knee(front(records, ACC_MACS), ACC_MACS).trial == 1
    assert knee(records[:1], ACC_MACS).trial == 0


# ---- plots ----------------------------------------------------------------------------------
def make_run(path, records, sampler="nsga2", objectives=ACC_MACS, **info):
    store = RunStore(path)
    store.create_or_check({
        "backend": "optuna", "space_fingerprint": "test",
        "space": {"name": "tiny", "task": {"dataset": "digits", "resolution": 16, "classes": 10}},
        "data": conftest.digits_data(),
        "objectives": [list(o) for o in objectives], "sampler": sampler, "options": {}, **info})
    for r in records:
        store.append(r)
    return path


def sample_records():
    return [rec(-1, 0.95, 3000, kind="baseline", name="plain_cnn"),
            rec(0, 0.8, 5000), rec(1, 0.7, 2000), rec(2, None, 90000, status="infeasible"),
            rec(3, 0.6, 8000), rec(4, 0.9, 20000), rec(5, None, 4000, status="failed"),
            rec(6, 0.9, 20000, status="reused", hash_="h00000000004", reused_from=4)]


def test_plots_are_written_with_a_tooltip_per_eligible_trial(tmp_path):
    run = make_run(tmp_path / "run", sample_records())
    other = make_run(tmp_path / "other", sample_records()[1:4], sampler="random")
    result = plot_pareto([run, other], out=tmp_path / "plots")
    for name in ("pareto.png", "hypervolume.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    page = (tmp_path / "plots" / "pareto.html").read_text()
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    eligible_trials = [r for r in sample_records() if r.kind == "search" and r.val_acc] + \
        [r for r in sample_records()[1:4] if r.val_acc]
    assert page.count('class="trial"') == len(eligible_trials)
    for r in eligible_trials:
        assert f"<title>{r.hash}\ntrial {r.trial} ({r.status})" in page
    first, second = result["runs"]
    assert [f["trial"] for f in first["front"]] == [1, 0, 4] and first["knee"] == 0
    assert first["sampler"] == "nsga2" and second["sampler"] == "random"
    assert first["finished_search_trials"] == 7 and first["eligible_trials"] == 5


def test_bad_axis_flags_are_refused(tmp_path):
    run = make_run(tmp_path / "run", sample_records())
    with pytest.raises(OptionError, match=r"--x: 'flops' is not allowed \(one of macs, params, "):
        plot_pareto([run], x="flops", out=tmp_path / "p")
    with pytest.raises(OptionError, match="--y: 'macs' is not allowed"):
        plot_pareto([run], y="macs", out=tmp_path / "p")
    with pytest.raises(RunError, match="has no latency_ms values"):
        plot_pareto([run], x="latency_ms", out=tmp_path / "p")
    with pytest.raises(RunError, match=r"^--y: .* is a run of classifiers, without val_miou"):
        plot_pareto([run], y="val_miou", out=tmp_path / "p")
    assert not (tmp_path / "p").exists()
    with pytest.raises(OptionError, match=r"--by: 'depth' is not allowed \(one of aggregation, "):
        plot_pareto([run], by="depth", out=tmp_path / "p")


def test_a_run_without_trials_is_refused(tmp_path):
    run = make_run(tmp_path / "empty", [])
    with pytest.raises(RunError, match="empty: no trials.jsonl"):
        plot_pareto([run], out=tmp_path / "p")
    (run / "trials.jsonl").write_text("")
    with pytest.raises(RunError, match="has no finished trials"):
        plot_pareto([run], out=tmp_path / "p")
    with pytest.raises(RunError, match="no run.yaml"):
        plot_pareto([tmp_path / "nothing"], out=tmp_path / "p")


def test_a_corrupt_line_is_skipped_with_a_warning_and_no_eligible_trial_still_plots(tmp_path):
    run = make_run(tmp_path / "run", [rec(0, None, 9000, status="infeasible")])
    with open(run / "trials.jsonl", "a") as fh:
        fh.write("{not json\n")
    with pytest.warns(UserWarning, match=r"trials.jsonl:2: skipped a corrupt line"):
        result = plot_pareto([run], out=tmp_path / "p")
    summary = result["runs"][0]
    assert summary["front"] == [] and summary["knee"] is None
    assert "no eligible trials" in summary["note"]
    assert (tmp_path / "p" / "pareto.png").stat().st_size > 0


def test_an_early_stopped_trial_never_enters_the_front():
    stopped = rec(1, 0.5, 10, stopped_rung=1)  # cheap, but its accuracy is from 1 epoch
    full = rec(2, 0.9, 1000)
    objectives = [("val_acc", "maximize"), ("macs", "minimize")]
    assert [r.trial for r in front([stopped, full], objectives)] == [2]


# ---- ablation colouring (--by) --------------------------------------------------------------
TREE = {"channels": 16, "depth": 2}  # aggregation and level_root at their defaults
CHAIN = {"channels": 16, "aggregation": "none", "blocks": 2}
CHAIN_GENOME = {"stem": GENOME["stem"], "block": "plain", "stages": [CHAIN, CHAIN]}
IDA_GENOME = {**GENOME, "stages": [TREE, TREE, {**TREE, "ida_from": [0]}]}


@pytest.mark.parametrize("stages, expected", [
    ([TREE, TREE], "tree"), ([CHAIN], "none"), ([CHAIN, CHAIN], "none"),
    ([CHAIN, TREE], "mixed"), ([TREE, {**TREE, "aggregation": "tree"}, CHAIN], "mixed")])
def test_aggregation_is_tree_none_or_mixed(stages, expected):
    assert aggregation({"stem": GENOME["stem"], "stages": stages}) == expected


def test_block_defaults_to_basic():
    assert block({"stem": GENOME["stem"], "stages": [TREE]}) == "basic"
    assert block({"stem": GENOME["stem"], "block": "bottleneckx", "stages": [TREE]}) == "bottleneckx"


@pytest.mark.parametrize("stages, expected", [
    ([TREE], "level_root only"),  # a tree's level_root defaults to true
    ([{**TREE, "level_root": False}], "no IDA"),
    ([CHAIN, CHAIN], "no IDA"),  # a chain's defaults to false
    ([CHAIN, {**CHAIN, "level_root": True}], "level_root only"),
    ([{**TREE, "level_root": False}, {**TREE, "level_root": False, "ida_from": []}], "no IDA"),
    ([TREE, TREE, {**TREE, "ida_from": [0]}], "IDA edges"),
    ([CHAIN, CHAIN, {**CHAIN, "ida_from": [0]}], "IDA edges")])
def test_ida_names_the_strongest_link(stages, expected):
    assert ida({"stem": GENOME["stem"], "stages": stages}) == expected


def test_properties_of_written_genomes():
    """On ``Genome.to_dict`` output, which drops default fields and writes others always."""
    dla = zoo.find("dla34_cifar").to_dict()
    assert (aggregation(dla), block(dla), ida(dla)) == ("tree", "basic", "level_root only")
    resnet = zoo.find("resnet20").to_dict()
    assert (aggregation(resnet), block(resnet), ida(resnet)) == ("none", "basic", "no IDA")
    assert block(zoo.find("plain_cnn").to_dict()) == "plain"
    dla["stages"][3]["ida_from"] = [1]
    assert ida(Genome.from_dict(dla).to_dict()) == "IDA edges"
    dla["stages"][1]["aggregation"] = "none"
    assert aggregation(dla) == "mixed"


def test_value_counts_are_in_legend_order_and_skip_missing_genomes():
    genomes = [CHAIN_GENOME, None, GENOME, CHAIN_GENOME, {**GENOME, "block": "new"}]
    assert value_counts("aggregation", genomes) == [("tree", 2), ("none", 2)]
    assert value_counts("block", genomes) == [("basic", 1), ("plain", 2), ("new", 1)]


@pytest.fixture
def png_figures(monkeypatch):
    """The figures that the plots save, by file name, to read their legends and lines."""
    saved = {}
    original = Figure.savefig

    def spy(fig, path, *args, **kwargs):
        saved[Path(path).name] = fig
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return saved


def legend_texts(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def ablation_runs(tmp_path):
    trees = [rec(0, 0.8, 5000), rec(1, 0.7, 2000), rec(2, 0.85, 9000, genome=IDA_GENOME),
             rec(3, None, 4000, status="failed", genome=None)]
    chains = [rec(0, 0.6, 1000, genome=CHAIN_GENOME), rec(1, 0.75, 6000, genome=CHAIN_GENOME)]
    return make_run(tmp_path / "trees", trees), make_run(tmp_path / "chains", chains)


def test_pareto_by_colours_trials_by_property_with_a_marker_per_run(tmp_path, capsys,
                                                                      png_figures):
    trees, chains = ablation_runs(tmp_path)
    out = tmp_path / "plots"
    assert main(["pareto", str(trees), str(chains), "--by", "aggregation", "--out", str(out)]) == 0
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    legend = legend_texts(png_figures["pareto.png"])
    assert "aggregation: tree (3)" in legend and "aggregation: none (2)" in legend
    assert "chains: Pareto front (2, outlined; dominated faded)" in legend
    assert not any("dominated trials" in t for t in legend)
    page = (out / "pareto.html").read_text()
    assert "Colour: aggregation:" in page and "tree (3)" in page and "none (2)" in page
    shapes = re.findall(r'<(\w+) [^>]*class="trial"', page)
    assert shapes == ["circle"] * 3 + ["rect"] * 2  # a run's trials dots, the other's squares
    tree_fill, chain_fill = COLOURS[0], COLOURS[1]
    assert page.count(f'class="trial" fill="{tree_fill}"') == 3
    assert page.count(f'class="trial" fill="{chain_fill}"') == 2
    assert page.count('class="cost-only"') == 1  # the failed trial without a genome, as before
    assert "colours by aggregation: tree 3, none 2" in capsys.readouterr().out


def test_a_stopped_trial_is_drawn_hollow_at_its_rung_and_off_the_front(tmp_path, png_figures):
    records = [rec(0, 0.8, 5000), rec(1, 0.7, 2000), rec(2, 0.75, 1000, stopped_rung=4)]
    result = plot_pareto([make_run(tmp_path / "run", records)], out=tmp_path / "p")
    assert [r["trial"] for r in result["runs"][0]["front"]] == [1, 0]
    assert "stopped early (accuracy at its rung)" in legend_texts(png_figures["pareto.png"])
    page = (tmp_path / "p" / "pareto.html").read_text()
    assert page.count('class="trial"') == 2 and page.count('class="stopped"') == 1
    assert page.count("stopped early after epoch 4") == 1  # in its tooltip


def test_pareto_by_ida_names_the_values_in_legend_and_tooltips(tmp_path, png_figures):
    trees, _ = ablation_runs(tmp_path)
    result = plot_pareto([trees], by="ida", out=tmp_path / "p")
    assert result["by"] == {"property": "ida",
                            "counts": {"IDA edges": 1, "level_root only": 2}}
    legend = legend_texts(png_figures["pareto.png"])
    assert legend[:3] == ["Pareto front (3, outlined; dominated faded)", "knee (trial 0)",
                          "ida: IDA edges (1)"]
    page = (tmp_path / "p" / "pareto.html").read_text()
    assert page.count("\nida: level_root only</title>") == 2
    assert page.count("\nida: IDA edges</title>") == 1


def test_without_by_the_trials_keep_their_run_colour(tmp_path, png_figures):
    trees, chains = ablation_runs(tmp_path)
    result = plot_pareto([trees, chains], out=tmp_path / "p")
    assert result["by"] is None
    assert "trees: Pareto front (3)" in legend_texts(png_figures["pareto.png"])
    page = (tmp_path / "p" / "pareto.html").read_text()
    assert "Colour:" not in page and "\nida: " not in page
    assert re.findall(r'<(\w+) [^>]*class="trial"', page) == ["circle"] * 5
    assert page.count(f'class="trial" fill="{COLOURS[1]}"') == 2


def test_a_bad_by_exits_2(tmp_path, capsys):
    trees, _ = ablation_runs(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["pareto", str(trees), "--by", "depth"])
    assert exc.value.code == 2
    assert "--by: invalid choice: 'depth'" in capsys.readouterr().err
    assert not (trees / "pareto.png").exists()


# ---- the confirmed front and the hand-designed line -----------------------------------------
def confirm_lines(run, units):
    store = ConfirmStore(run / CONFIRM_FILE)
    for label, kind, trial, macs, params, accs in units:
        for seed, acc in enumerate(accs):
            store.append(ConfirmRecord(label=label, kind=kind, hash=f"c{label}", seed=seed,
                                       trial=trial, macs=macs, params=params, val_acc=acc,
                                       test_acc=acc, test_balanced_acc=acc - 0.1,
                                       recipe={"epochs": 1}))
    return run


def confirmed_run(tmp_path):
    run = make_run(tmp_path / "run", sample_records())
    return confirm_lines(run, [
        ("trial 1", "search", 1, 2000, 500, (0.70, 0.72)),
        ("trial 0", "search", 0, 5000, 400, (0.80, 0.82)),
        ("trial 3", "search", 3, 8000, 300, (0.60, 0.62)),   # dominated by trial 0
        ("trial 4", "search", 4, 20000, 200, (0.78, 0.80)),  # dominated by trial 0
        ("plain_cnn", "baseline", None, 3000, 100, (0.75, 0.77)),
        ("resnet20", "baseline", None, 9000, 50, (0.85, 0.87)),
        ("resnet8", "baseline", None, 1500, 900, (0.65, 0.67))])


def line(fig, prefix):
    (found,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(prefix)]
    return list(found.get_xdata()), list(found.get_ydata())


def test_confirmed_front_and_hand_designed_line_are_drawn(tmp_path, png_figures):
    plot_pareto([confirmed_run(tmp_path)], out=tmp_path / "p")
    fig = png_figures["pareto.png"]
    legend = legend_texts(fig)
    assert "confirmed front (2, mean test)" in legend
    assert "hand-designed line (confirmed baselines, mean test)" in legend
    xs, ys = line(fig, "confirmed front")
    assert xs == [2000, 5000, 20000] and ys == pytest.approx([0.71, 0.81, 0.81])
    assert line(fig, "confirmed front")[0] != line(fig, "hand-designed")[0]
    xs, ys = line(fig, "hand-designed")
    assert xs == [1500, 3000, 9000] and ys == pytest.approx([0.66, 0.76, 0.86])


def test_confirmed_lines_follow_the_cost_axis_and_the_balanced_metric(tmp_path, png_figures):
    plot_pareto([confirmed_run(tmp_path)], x="params", y="val_balanced_acc", out=tmp_path / "p")
    fig = png_figures["pareto.png"]
    xs, ys = line(fig, "hand-designed")
    assert xs == [50, 100, 900] and ys == pytest.approx([0.76, 0.66, 0.56])
    # by params, trial 4 (200) and trial 3 (300) are cheaper than trial 0 (400)
    xs, ys = line(fig, "confirmed front")
    assert xs == [200, 400, 500] and ys == pytest.approx([0.69, 0.71, 0.71])


def test_without_confirm_jsonl_there_are_no_confirmed_lines(tmp_path, png_figures):
    plot_pareto([make_run(tmp_path / "run", sample_records())], out=tmp_path / "p")
    assert not any("confirmed" in t or "hand-designed" in t
                   for t in legend_texts(png_figures["pareto.png"]))


def test_a_run_ranked_by_balanced_accuracy_shows_it_everywhere(tmp_path, capsys):
    """With val_balanced_acc as the objective, status, the front table, the progress line and
    the tooltips show it, not plain accuracy (which flatters a majority-class model)."""
    from dla_nas.cli.render import record_line

    records = [rec(0, 0.9, 5000), rec(1, 0.7, 2000)]
    for r, balanced in zip(records, (0.31, 0.52)):
        r.val_balanced_acc = balanced
    run = make_run(tmp_path / "run", records,
                   objectives=[("val_balanced_acc", "maximize"), ("macs", "minimize")])
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "val_balanced_acc" in out and "0.3100" in out and "0.5200" in out
    assert "0.9000" not in out and "0.7000" not in out
    assert record_line(records[0], metric="val_balanced_acc") == (
        "trial 0: ok val_balanced_acc 0.3100, 0.005M MACs")
    assert main(["pareto", str(run), "--out", str(tmp_path / "plots")]) == 0
    page = (tmp_path / "plots" / "pareto.html").read_text()
    assert "val_balanced_acc 0.3100" in page


def test_the_plot_draws_what_a_model_that_learnt_nothing_scores(tmp_path):
    """Plain accuracy: always answering the largest val class (from the data report);
    balanced accuracy, or no report: a guess among the classes."""
    report = {"counts": {"val": {"Free": 6, "Fray": 2}}}
    run = make_run(tmp_path / "run", sample_records(), data={"num_classes": 2, "report": report})
    assert plot_pareto([run], out=tmp_path / "p1")["chance"] == [0.75, "always the largest class"]
    assert plot_pareto([run], y="val_balanced_acc", out=tmp_path / "p2")["chance"] == [
        0.5, "chance (1 of 2 classes)"]
    four = make_run(tmp_path / "four", sample_records(), data={"num_classes": 4})
    assert plot_pareto([four], out=tmp_path / "p3")["chance"][0] == pytest.approx(0.25)
    bare = make_run(tmp_path / "bare", sample_records(), data=None)  # no data section
    assert plot_pareto([bare], out=tmp_path / "p4")["chance"] is None
