"""`dla-nas search` on a user's folder, then `dla-nas confirm`: seeds, the test split read
once, a record per finished unit that survives a kill, and the figures in status, pareto and
export."""

import dataclasses
import json
import shutil

import conftest
import pytest
import yaml
from conftest import write_folder

from dla_nas.analysis.confirm import (
    CONFIRM_FILE,
    ConfirmStore,
    baseline_candidate,
    confirm,
    load_confirmed,
    run_candidates,
)
from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset
from dla_nas.results import RunError, RunStore, load_run
from dla_nas.train.config import TrainConfig

SPACE = {
    "name": "folder-tiny",
    "task": {"dataset": "digits", "resolution": 8},  # replaced by --dataset
    "proxy": {"epochs": 1, "min_steps": 4, "batch_size": 16},
    "objectives": {"val_balanced_acc": "maximize", "macs": "minimize"},
    "genome": {
        "stem": {"kernel": 3, "levels": [{"channels": [4, 8]}]},
        "stages": [{"channels": [8, 16], "stride": 1, "level_root": False},
                   {"channels": 16, "depth": [1, 2]}],
    },
}
RECIPE = ["--epochs", "1", "--min-steps", "4", "--batch-size", "16"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A 4-trial search on a class-sorted, imbalanced folder of mixed formats."""
    tmp = tmp_path_factory.mktemp("confirm")
    root = write_folder(tmp / "data", {"crack": 30, "ok": 60, "spot": 20}, fmt="png")
    write_folder(tmp / "data", {"crack": 6}, fmt="jpg", seed=1)
    space = conftest.write_space(tmp, SPACE)
    out = tmp / "run"
    assert main(["search", "--space", str(space), "--dataset", f"folder:{root}",
                 "--resolution", "16", "--trials", "4", "--out", str(out)]) == 0
    return out, root


def test_search_on_a_folder_records_its_data_and_inspection_metrics(searched):
    out, root = searched
    info = RunStore(out).info()
    assert info["data"]["class_names"] == ["crack", "ok", "spot"]
    assert (info["data"]["in_chans"], info["data"]["resolution"]) == (1, 16)
    assert info["space"]["task"] == {"dataset": f"folder:{root}", "resolution": 16}
    trained = [r for r in load_run(out) if r.status == "ok"]
    assert trained and all(r.val_balanced_acc is not None for r in trained)
    assert all(len(r.val_confusion) == 3 and len(r.val_per_class_recall) == 3 for r in trained)
    assert all(r.epochs_run == 1 for r in trained)  # 4 steps fit in one epoch of 66 images


def test_confirm_trains_each_unit_once_and_resumes_after_a_kill(searched, tmp_path):
    out, _ = searched
    candidates = run_candidates(out, pareto=True, top=None, trials=[],
                                baselines=["plain_cnn_4_8"])
    info = RunStore(out).info()
    data = load_dataset(DataConfig(info["space"]["task"]["dataset"], resolution=16))
    cfg = TrainConfig(epochs=1, min_steps=4, batch_size=16, device="cpu")
    store = ConfirmStore(tmp_path / CONFIRM_FILE)

    def killed(record, i, n):
        if i == 2:
            raise KeyboardInterrupt  # the driver dies after the second unit

    with pytest.raises(KeyboardInterrupt):
        confirm(candidates, [0, 1], data, cfg, store, killed)
    first = store.records()
    assert len(first) == 2
    seen, heard = [], []
    records = confirm(candidates, [0, 1], data, cfg, store, lambda r, i, n: seen.append(r.key),
                      on_epoch=lambda c, seed, report: heard.append(
                          ((c.unit, seed), report.epoch, report.epochs)))
    assert len(records) == 2 * len(candidates) and len(seen) == len(records) - 2
    assert heard == [(key, 1, 1) for key in seen]  # each unit in training says its epochs
    assert not {r.key for r in first} & set(seen)  # nothing that finished is trained again
    assert records[:2] == first  # and nothing is lost
    for r in records:
        assert len(r.test_confusion) == 3 and sum(map(sum, r.test_confusion)) == len(data.test)
        assert r.device == "cpu"  # where each row trained is kept, outside the recipe
    with pytest.raises(RunError, match=r"made with another recipe \(lr 0.05 -> 0.1\)"):
        confirm(candidates, [0], data, TrainConfig(epochs=1, min_steps=4, batch_size=16,
                                                   lr=0.1, device="cpu"), store)
    # the same recipe on another split (the folder split by another seed) would be tested on
    # other images, and averaged with these: refused, before anything trains
    assert {r.split for r in records} == {data.fingerprint()}
    other = load_dataset(DataConfig(info["space"]["task"]["dataset"], resolution=16, seed=1))
    with pytest.raises(RunError, match=r"its units were tested on other images"):
        confirm(candidates, [2], other, cfg, store)
    assert store.records() == records and not list(store.weights_dir.glob("*seed2*"))


def test_a_unit_interrupted_mid_training_goes_on_from_its_last_epoch(searched, tmp_path):
    """The unit in training saves its state after each epoch; the same confirmation goes on
    from there, to the same record as a run that was never interrupted."""
    out, _ = searched
    cand = baseline_candidate("plain_cnn_4_8")
    info = RunStore(out).info()
    data = load_dataset(DataConfig(info["space"]["task"]["dataset"], resolution=16))
    cfg = TrainConfig(epochs=3, min_steps=0, batch_size=16, device="cpu")
    whole = confirm([cand], [0], data, cfg, ConfirmStore(tmp_path / "whole.jsonl"))[0]
    store = ConfirmStore(tmp_path / CONFIRM_FILE)

    def killed(c, seed, report):
        if report.epoch == 2:
            raise KeyboardInterrupt  # after the state of epoch 2 was saved

    with pytest.raises(KeyboardInterrupt):
        confirm([cand], [0], data, cfg, store, on_epoch=killed)
    assert not store.records() and store.state_path(cand, 0).is_file()
    key = {"recipe": whole.recipe, "data": data.fingerprint()}
    assert store.saved_state(cand, 0, key)["epoch"] == 2
    assert store.saved_state(cand, 0, {**key, "recipe": {**whole.recipe, "lr": 0.1}}) is None
    other = load_dataset(DataConfig(info["space"]["task"]["dataset"], resolution=16, seed=1))
    assert store.saved_state(cand, 0, {**key, "data": other.fingerprint()}) is None  # split
    heard = []
    [again] = confirm([cand], [0], data, cfg, store,
                      on_epoch=lambda c, seed, report: heard.append(report.epoch))
    assert heard == [3]  # epochs 1 and 2 were not trained again
    assert not store.state_path(cand, 0).exists()  # recorded: the state is deleted
    same = ("val_acc", "test_acc", "test_confusion", "epochs_run")
    assert [getattr(again, k) for k in same] == [getattr(whole, k) for k in same]

    store.state_path(cand, 0).write_bytes(b"PK")  # damaged: a unit would start over
    assert store.saved_state(cand, 0, key) is None


def test_confirm_cli_then_status_pareto_and_export_show_the_figures(searched, capsys):
    out, _ = searched
    argv = ["confirm", str(out), "--pareto", "--seeds", "0,1", "--baselines",
            "plain_cnn_4_8", *RECIPE]
    assert main(argv) == 0
    lines = (out / CONFIRM_FILE).read_text().splitlines()
    assert main(argv) == 0  # a rerun trains nothing
    assert (out / CONFIRM_FILE).read_text().splitlines() == lines
    confirmed = load_confirmed(out)
    assert {c.kind for c in confirmed} == {"search", "baseline"}
    assert all(c.seeds == [0, 1] and c.test_acc[1] <= c.test_acc[0] <= c.test_acc[2]
               for c in confirmed)
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "confirmed on the test split" in capsys.readouterr().out
    assert main(["pareto", str(out)]) == 0 and (out / "pareto.png").stat().st_size > 0
    trial = next(c for c in confirmed if c.kind == "search").trial
    assert main(["export", str(out), "--trial", str(trial)]) == 0
    exported = yaml.safe_load(next((out / "export").glob(f"*trial{trial}-*.yaml")).read_text())
    meta = exported["metadata"]
    assert meta["in_chans"] == 1 and meta["num_classes"] == 3
    assert meta["class_names"] == ["crack", "ok", "spot"]  # what each output means
    assert meta["confirmed"]["seeds"] == [0, 1] and 0 <= meta["confirmed"]["test_acc"]["mean"] <= 1
    capsys.readouterr()
    config = next((out / "export").glob(f"*trial{trial}-*.yaml"))
    assert main(["show", str(config), "--json"]) == 0  # shown at the size it was searched at
    shown = json.loads(capsys.readouterr().out)
    assert shown["input"] == meta["input_shape"] and shown["classes"] == 3
    assert shown["macs"] == meta["macs"]
    assert main([*argv[:4], "0", *argv[5:], "--epochs", "2"]) == 2  # another recipe, same file
    assert "made with another recipe" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--trial", "99"], "--trial: 99 is not a finished search trial"),
    (["--baselines", "vgg16"], "--baselines: 'vgg16' is not known"),
    ([], "nothing to confirm"),
    (["--baselines", "dla34"], "input size 16 px is too small for this genome"),
])
def test_bad_confirm_input_is_one_line(searched, argv, message, capsys):
    out, _ = searched
    assert main(["confirm", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_infeasible_trial_is_not_confirmed(searched, tmp_path, capsys):
    """A trial outside the run's constraints never trained, and export refuses it: confirm
    refuses it too rather than train what cannot be exported."""
    out, _ = searched
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("*.lock", "confirm*", "weights"))
    record = next(r for r in load_run(copy) if r.kind == "search")
    over = dataclasses.replace(record, trial=99, status="infeasible", val_acc=None,
                               reason="macs 9 > max_macs 1")
    RunStore(copy).append(over)
    assert main(["confirm", str(copy), "--trial", "99", *RECIPE]) == 2
    assert ("--trial: trial 99 is infeasible (macs 9 > max_macs 1): outside the run's "
            "constraints") in capsys.readouterr().err
    assert main(["export", str(copy), "--trial", "99"]) == 2


def test_a_bad_dataset_is_refused_before_run_yaml_and_the_corrected_rerun_works(tmp_path, capsys):
    space = conftest.write_space(tmp_path, SPACE)
    out = tmp_path / "run"
    assert main(["search", "--space", str(space), "--dataset", f"folder:{tmp_path}/nope",
                 "--trials", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--dataset: folder:" in err and "does not exist" in err
    assert not (out / "run.yaml").exists()
    root = write_folder(tmp_path / "data", {"a": 10, "b": 10})
    assert main(["search", "--space", str(space), "--dataset", f"folder:{root}",
                 "--trials", "1", "--out", str(out)]) == 0
    assert len(load_run(out)) == 1


def test_baseline_names_of_the_line_build():
    from dla_nas import build_model
    from dla_nas.arch.baselines import LINE, baseline_genome
    from dla_nas.arch.cost import count_params
    from dla_nas.errors import OptionError

    assert [baseline_genome(n).name for n in LINE] == list(LINE)
    with pytest.raises(OptionError, match=r"--baselines: zoo: 'resnet9'.*6n\+2"):
        baseline_genome("resnet9")
    with pytest.raises(OptionError, match=r"--baselines: zoo: 'dla34_cifar_x2'.*\(0, 1\]"):
        baseline_genome("dla34_cifar_x2")
    with pytest.raises(OptionError, match=r"--baselines: 'vgg16' is not known \(allowed: dla34"):
        baseline_genome("vgg16")
    # He et al.'s CIFAR ResNet-20 has 0.27M parameters
    assert count_params(build_model("resnet20", 10, 3)) == pytest.approx(272_474, rel=0.01)
    narrow = count_params(build_model("dla34_cifar_x0.25", 10, 3))
    assert narrow < count_params(build_model("dla34_cifar", 10, 3)) / 10
    hashes = {baseline_candidate(n).hash for n in LINE}
    assert len(hashes) == len(LINE)  # every hand design is its own candidate


def test_an_append_after_a_torn_line_starts_on_a_fresh_line(tmp_path):
    from dla_nas.results import TrialRecord

    store = RunStore(tmp_path)
    store.append(TrialRecord(trial=0, status="ok", hash="a", val_acc=0.5))
    with open(store.trials_file, "a") as fh:
        fh.write('{"trial": 1, "status": "ok", "ha')  # a crash in the middle of a write
    store.append(TrialRecord(trial=2, status="ok", hash="c", val_acc=0.7))
    with pytest.warns(UserWarning, match="trials.jsonl:2: skipped a corrupt line"):
        assert [r.trial for r in load_run(tmp_path)] == [0, 2]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"trial": 3, "status": "ok", "hash": "d",
                                                    "val_acc": "high"}) + "\n")
    with pytest.warns(UserWarning, match="skipped a corrupt line"):
        assert load_run(tmp_path / "bad.jsonl") == []


def test_a_search_trial_that_is_a_hand_design_and_a_0_1_baseline_line_keep_their_rows(tmp_path):
    from dla_nas.analysis.confirm import ConfirmRecord, baseline_candidate, summarize

    resnet8 = baseline_candidate("resnet8")
    line = dict(macs=1, params=1, val_acc=1.0, test_acc=0.9, test_balanced_acc=0.9,
                recipe={"lr": 0.05})
    store = ConfirmStore(tmp_path / "confirm.jsonl")
    store.append(ConfirmRecord("trial 3", "search", resnet8.hash, 0, trial=3, **line))
    store.append(ConfirmRecord("resnet8", "baseline", "plain-8c0b8c", 0, **line))  # 0.1's id
    rows = summarize(store.records())
    assert sorted((c.label, c.seeds) for c in rows) == [("resnet8", [0]), ("trial 3", [0])]
    done = {r.key for r in store.records()}
    assert (resnet8.unit, 0) in done  # the 0.1 line counts for its name: not retrained
    assert (resnet8.unit, 1) not in done


def test_compare_with_line_finds_the_targets_and_the_gap():
    from dla_nas.analysis.confirm import Confirmed, compare_with_line

    def row(label, kind, macs, mean, low, high):
        return Confirmed(label, kind, label, None, macs, 1, [0, 1, 2], (mean, low, high),
                         (mean, low, high), mean, None)

    line = [row("small", "baseline", 100, 0.90, 0.89, 0.91),
            row("big", "baseline", 1000, 0.95, 0.94, 0.96)]
    half = row("trial 1", "search", 400, 0.951, 0.95, 0.952)
    better = row("trial 2", "search", 900, 0.97, 0.965, 0.975)
    out = compare_with_line(line + [half, better])
    assert out["best_hand_design"]["label"] == "big"
    assert [r["label"] for r in out["half_macs"]] == ["trial 1"]
    assert [r["label"] for r in out["one_point"]] == ["trial 2"]
    assert out["gap"] == pytest.approx(0.001)
    assert out["hypervolume"]["front"] > out["hypervolume"]["line"]
    # a search trial that drew a hand design (the warm start does) is no finding but one of
    # the line: one of the confirmed line, or one named by hand_designs (with its recipe in
    # the key); trained by the search's recipe, it may be the line's best
    redrawn = row("small", "search", 100, 0.90, 0.88, 0.92)
    assert compare_with_line(line + [half, redrawn])["half_macs"] == out["half_macs"]
    warm = row("hd@lr=0.1", "search", 100, 0.96, 0.95, 0.97)
    assert [r["label"] for r in compare_with_line(line + [half, warm])["half_macs"]] == \
        ["trial 1", "hd@lr=0.1"]
    own = compare_with_line(line + [half, warm], {"hd"})
    assert own["best_hand_design"]["label"] == "hd@lr=0.1" and own["half_macs"] == []
    # the thresholds of another target: 2/3 of the MACs, or a point better at 1.1x
    wider = compare_with_line(line + [half, row("trial 4", "search", 1050, 0.97, 0.965, 0.975)],
                              share=2 / 3, point_macs=1.1)
    assert [r["label"] for r in wider["one_point"]] == ["trial 4"]
    short = compare_with_line(line + [row("trial 3", "search", 500, 0.93, 0.92, 0.94)])
    assert short["half_macs"] == [] and short["one_point"] == []
    assert short["gap"] == pytest.approx(-0.02)
    # a dense run compares mean test mIoU: the same rows, ranked by another figure
    from dataclasses import replace

    dense = [replace(c, test_miou=(m, m, m)) for c, m in
             zip(line + [half, better], (0.50, 0.40, 0.45, 0.30))]
    by_miou = compare_with_line(dense, metric="val_miou")
    assert by_miou["best_hand_design"] == {"label": "small", "macs": 100, "seeds": 3,
                                           "test_miou": [0.5, 0.5, 0.5]}
    assert by_miou["half_macs"] == [] and by_miou["gap"] is None
    for rows in (line, line + [redrawn]):  # no search trial but a hand design
        with pytest.raises(RunError, match="confirmed search trials that are not hand designs"):
            compare_with_line(rows)


def test_committed_confirm_lines_with_a_removed_setting_match_todays_recipe():
    """The committed reference runs hold ``balanced_loss: false``, a setting since removed at
    that value: their lines match the recipe without it; another value would not."""
    from dataclasses import replace
    from pathlib import Path

    from dla_nas.analysis.confirm import _check_recipe

    path = Path(__file__).parents[1] / "results" / "reference-neu-steel" / CONFIRM_FILE
    line = next(r for r in ConfirmStore(path).records() if "balanced_loss" in r.recipe)
    recipe = {k: v for k, v in line.recipe.items() if k != "balanced_loss"}
    _check_recipe(path, [line], recipe)
    on = replace(line, recipe={**line.recipe, "balanced_loss": True})
    with pytest.raises(RunError, match="balanced_loss True -> None"):
        _check_recipe(path, [on], recipe)


def test_a_line_confirmed_in_another_run_with_the_same_recipe_compares(tmp_path):
    """benchmarks/front_vs_line.py --line: the baselines of another run's confirmation are
    the line when both confirmations share one recipe; another recipe, or no baseline there,
    is refused naming the run."""
    from dla_nas.analysis.confirm import ConfirmRecord, load_line

    recipe = {"lr": 0.05, "dataset": "digits", "resolution": 16}

    def run(name, *records):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "run.yaml").write_text(yaml.safe_dump({"data": {"class_names": ["a", "b"]}}))
        for r in records:
            ConfirmStore(folder / CONFIRM_FILE).append(r)
        return folder

    def unit(label, kind, seed, recipe=recipe):
        return ConfirmRecord(label, kind, label, seed, macs=100, test_acc=0.5 + seed / 10,
                             recipe=recipe)

    ours = run("ours", unit("trial 3", "search", 0))
    first = run("first", unit("trial 1", "search", 0), unit("unet", "baseline", 0),
                unit("unet", "baseline", 1))
    (line,) = load_line(first, ours)
    assert (line.label, line.kind, line.seeds, line.test_acc[0]) == ("unet", "baseline",
                                                                      [0, 1], 0.55)
    other = run("other", unit("unet", "baseline", 0, {**recipe, "lr": 0.1}))
    with pytest.raises(RunError, match="another recipe than .*ours \\(it differs in lr\\)"):
        load_line(other, ours)
    # a split is known where the records say it (files before it: not): another is refused
    split = run("split", dataclasses.replace(unit("trial 3", "search", 0), split="a"))
    assert load_line(first, split)
    resplit = run("resplit", dataclasses.replace(unit("unet", "baseline", 0), split="b"))
    with pytest.raises(RunError, match="resplit: tested on other images than .*split"):
        load_line(resplit, split)
    with pytest.raises(RunError, match="ours: no confirmed baseline"):
        load_line(ours, first)
