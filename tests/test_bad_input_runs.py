"""Bad input to runs of many trainings (issue 23): two `confirm` processes on one run, data
that changed since the search, a checkpoint evaluated on other classes. Each is refused with
one line, or shared without training anything twice."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_bad_input
from conftest import write_folder
from test_bad_input import TINY, changed, error_line
from test_confirm import RECIPE, SPACE

from dla_nas.analysis.claims import process_start, this_process
from dla_nas.analysis.confirm import (
    CONFIRM_FILE,
    ConfirmRecord,
    ConfirmStore,
    baseline_candidate,
    confirm,
    load_confirmed,
    recipe_of,
)
from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset
from dla_nas.errors import RunError
from dla_nas.results import RunStore, TrialRecord
from dla_nas.train.config import TrainConfig

CLASSES = {"a": 12, "b": 12, "c": 12}
BASELINE = "plain_cnn_4_8"
CFG = TrainConfig(epochs=1, min_steps=4, batch_size=16, device="cpu")
SEEDS = [0, 1]
checkpoint = test_bad_input.checkpoint  # the fixture: a tiny digits checkpoint


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder searched on a 3-class grey folder at 16 px, with one finished trial."""
    root = write_folder(tmp_path / "data", CLASSES)
    space = {**SPACE, "task": {"dataset": f"folder:{root}", "resolution": 16}}
    store = RunStore(tmp_path / "run")
    store.create_or_check({
        "backend": "optuna", "space_fingerprint": "test", "space": space,
        "data": {"name": f"folder:{root}", "resolution": 16, "in_chans": 1, "num_classes": 3,
                 "class_names": list(CLASSES)},
        "objectives": [["val_acc", "maximize"], ["macs", "minimize"]], "options": {}})
    store.append(TrialRecord(trial=0, status="ok", hash="h0", val_acc=0.5, macs=10, params=1,
                             genome=TINY))
    return store.path


def data_of(run: Path):
    return load_dataset(DataConfig(RunStore(run).info()["space"]["task"]["dataset"],
                                   resolution=16))


def claim(store: ConfirmStore, seed: int, **who) -> None:
    """Record a claim on (BASELINE, seed) as another process would."""
    unit = baseline_candidate(BASELINE).unit
    claims = store.claims.live()
    claims[json.dumps([*unit, seed])] = {**this_process(), **who}
    store.claims.write(claims)


def finish_as_another_process(store: ConfirmStore, record: ConfirmRecord, seed: int) -> None:
    """What another process does when it finishes (BASELINE, seed): append, drop its claim."""
    store.append(dataclasses.replace(record, seed=seed))
    store.claims.write({})


def keys(store: ConfirmStore) -> list:
    return [r.key for r in store.records()]


# ---- 1: two confirmations of one run --------------------------------------------------------
def test_a_unit_another_process_finished_meanwhile_is_not_trained_again(run, tmp_path):
    store, trained = ConfirmStore(tmp_path / CONFIRM_FILE), []

    def on_done(record: ConfirmRecord, i: int, n: int) -> None:
        trained.append(record.seed)
        if record.seed == 0:  # meanwhile another process finished seed 1
            finish_as_another_process(store, record, 1)

    confirm([baseline_candidate(BASELINE)], SEEDS, data_of(run), CFG, store, on_done)
    assert trained == [0]
    assert sorted(k[1] for k in keys(store)) == SEEDS


def test_a_unit_a_live_process_trains_is_waited_for_not_trained(run, tmp_path):
    store, data = ConfirmStore(tmp_path / CONFIRM_FILE), data_of(run)
    parent = os.getppid()  # a live process of this machine other than this one
    claim(store, 1, pid=parent, start=process_start(parent), recipe=recipe_of(CFG, data))
    trained, waited = [], []

    def on_wait(claims: list[dict]) -> None:  # the other process finishes while we wait
        waited.append([c["pid"] for c in claims])
        finish_as_another_process(store, store.records()[0], 1)

    confirm([baseline_candidate(BASELINE)], SEEDS, data, CFG, store,
            lambda r, i, n: trained.append(r.seed), on_wait=on_wait, poll=0.01)
    assert trained == [0] and waited == [[parent]]
    assert sorted(k[1] for k in keys(store)) == SEEDS
    assert not store.claims.path.exists()  # no claim is left behind


def test_a_claim_of_a_dead_process_is_taken_up(run, tmp_path):
    store = ConfirmStore(tmp_path / CONFIRM_FILE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim(store, 0, pid=dead.pid, start=None)  # a crash left its claim
    confirm([baseline_candidate(BASELINE)], SEEDS, data_of(run), CFG, store, poll=0.01)
    assert sorted(k[1] for k in keys(store)) == SEEDS


def test_a_unit_claimed_on_another_machine_is_left_to_it(run, tmp_path):
    store, data = ConfirmStore(tmp_path / CONFIRM_FILE), data_of(run)
    claim(store, 1, host="elsewhere", pid=1, recipe=recipe_of(CFG, data))
    waited: list = []
    confirm([baseline_candidate(BASELINE)], SEEDS, data, CFG, store, on_wait=waited.append,
            poll=0.01)
    assert [k[1] for k in keys(store)] == [0] and len(waited) == 1


def test_a_process_confirming_with_another_recipe_is_refused_before_training(run, tmp_path):
    store = ConfirmStore(tmp_path / CONFIRM_FILE)
    parent = os.getppid()
    claim(store, 1, pid=parent, start=process_start(parent), recipe={"lr": 1.0})
    with pytest.raises(RunError, match="confirming into it with another recipe"):
        confirm([baseline_candidate(BASELINE)], SEEDS, data_of(run), CFG, store)
    assert not store.path.exists()
    # the same recipe on another split: the two would leave a file no split can continue
    data = data_of(run)
    claim(store, 1, pid=parent, start=process_start(parent), recipe=recipe_of(CFG, data),
          split="another")
    with pytest.raises(RunError, match=r"confirming into it with other images \(another "):
        confirm([baseline_candidate(BASELINE)], SEEDS, data, CFG, store)
    assert not store.path.exists()


def test_status_counts_a_unit_recorded_twice_once(run, tmp_path):
    store = ConfirmStore(run / CONFIRM_FILE)
    confirm([baseline_candidate(BASELINE)], [0], data_of(run), CFG, store)
    store.append(store.records()[0])  # as two confirmations of an older dla-nas left it
    assert [c.seeds for c in load_confirmed(run)] == [[0]]


def test_two_confirm_processes_train_each_unit_once(run):
    argv = [sys.executable, "-m", "dla_nas.cli", "confirm", str(run), "--baselines", BASELINE,
            "--seeds", "0,1,2,3", "--device", "cpu", "--threads", "1", *RECIPE]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    lines = (run / CONFIRM_FILE).read_text().splitlines()
    assert len(lines) == 4, errors  # each (candidate, seed) once
    assert [c.seeds for c in load_confirmed(run)] == [[0, 1, 2, 3]]


# ---- 2: confirm on data that changed since the search ---------------------------------------
def add_class(root: Path) -> str:
    write_folder(root, {"d": 12}, seed=3)
    return "'d' added"


def rename_class(root: Path) -> str:
    (root / "c").rename(root / "e")
    return "'e' added; class(es) 'c' missing"


def colour(folder: Path) -> Path:
    """Turn the grey images of ``folder`` (and below) into colour ones (unequal channels)."""
    from PIL import Image, ImageOps

    for path in folder.rglob("*.png"):
        grey = Image.open(path).convert("L")
        Image.merge("RGB", (grey, grey, ImageOps.invert(grey))).save(path)
    return folder


def make_rgb(root: Path) -> str:
    colour(root / "a")
    return "3 channel(s) instead of 1"


@pytest.mark.parametrize("change", [add_class, rename_class, make_rgb])
def test_confirm_refuses_data_that_differ_from_the_run(change, run, capsys):
    root = run.parent / "data"
    difference = change(root)
    assert main(["confirm", str(run), "--baselines", BASELINE, "--seeds", "0", *RECIPE]) == 2
    error_line(capsys, f"folder:{root}", difference, str(run / "run.yaml"), "a, b, c")
    assert sorted(p.name for p in run.iterdir()) == [".lock", "run.yaml", "trials.jsonl"]


# ---- 3: eval on other classes than the checkpoint's -----------------------------------------
def ten_classes(tmp_path: Path, names: list[str]) -> str:
    return "folder:" + str(write_folder(tmp_path / "ten", {n: 6 for n in names}, size=8))


def test_eval_refuses_a_folder_with_other_class_names(checkpoint, tmp_path, capsys):
    names = [str(i) for i in range(9)] + ["x"]  # "9" renamed
    dataset = ten_classes(tmp_path, names)
    assert main(["eval", str(checkpoint), "--dataset", dataset, "--device", "cpu"]) == 2
    error_line(capsys, f"--dataset {dataset}", str(checkpoint), "'x' added", "'9' missing")


def test_eval_of_a_checkpoint_without_class_names_checks_their_count(checkpoint, tmp_path,
                                                                      capsys):
    old = changed(checkpoint, lambda c: c["data"].pop("class_names"))
    dataset = ten_classes(tmp_path, [f"k{i}" for i in range(10)])
    assert main(["eval", str(old), "--dataset", dataset, "--device", "cpu"]) == 0
    nine = ten_classes(tmp_path / "nine", [f"k{i}" for i in range(9)])
    capsys.readouterr()
    assert main(["eval", str(old), "--dataset", nine, "--device", "cpu"]) == 2
    error_line(capsys, f"--dataset {nine}", "9 classes instead of 10")


def test_a_checkpoint_with_bad_class_names_is_refused_at_load(checkpoint, capsys):
    bad = changed(checkpoint, lambda c: c["data"].update(class_names=["a"]))
    assert main(["eval", str(bad), "--device", "cpu"]) == 2
    error_line(capsys, str(bad), "data.class_names", "a list of 10 class names")


def test_eval_refuses_a_folder_with_other_channels(checkpoint, tmp_path, capsys):
    rgb = "folder:" + str(colour(write_folder(tmp_path / "rgb", {str(i): 6 for i in range(10)},
                                              size=8)))
    assert main(["eval", str(checkpoint), "--dataset", rgb, "--device", "cpu"]) == 2
    error_line(capsys, f"--dataset {rgb}", "3 channel(s) instead of 1")
