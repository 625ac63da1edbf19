"""Bad input on the command line: one line on stderr, exit status 2, nothing written.

Each test runs ``dla_nas.cli.main`` in-process on inputs built in ``tmp_path``; where a
command could load data or build a network first, that step is replaced by one that fails
the test, so the error is shown to come before it.
"""

import json
import types
from pathlib import Path

import conftest
import optuna
import pytest
import torch
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage

import dla_nas.arch.builder
import dla_nas.data
import dla_nas.search.core
import dla_nas.search.evaluator
from dla_nas.arch import zoo
from dla_nas.arch.builder import build_model
from dla_nas.arch.genome import MAX_BLOCKS, MAX_WEIGHTS, Genome
from dla_nas.cli import main
from dla_nas.errors import RunError
from dla_nas.results import RunStore, TrialRecord, load_run
from dla_nas.search.core import check_study_file
from dla_nas.search.space import SearchSpace
from dla_nas.train.checkpoint import save_checkpoint
from dla_nas.train.config import TrainConfig

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
TINY = {"stem": {"kernel": 3, "levels": [{"channels": 8}]},
        "stages": [{"channels": 8, "stride": 1}, {"channels": 8}]}
SPACE = {"name": "tiny", "task": {"dataset": "digits", "resolution": 16},
         "proxy": {"epochs": 1},
         "genome": {"stem": {"levels": [{"channels": 8}]}, "stages": [{"channels": 8}]}}


def error_line(capsys, *names: str) -> str:
    """The one line that a failed command wrote to stderr; it must name each of ``names``."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def no_loading(monkeypatch):
    """Loading data or building a network fails the test: an error must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("data were loaded or a network was built before the check")

    monkeypatch.setattr(dla_nas.data, "load_dataset", forbidden)
    monkeypatch.setattr(dla_nas.search.evaluator, "load_task_data", forbidden)
    monkeypatch.setattr(dla_nas.search.core, "load_task_data", forbidden)  # search's own name
    monkeypatch.setattr(dla_nas.arch.builder, "DLA", forbidden)


def make_run(path: Path) -> Path:
    """A run folder with two finished trials."""
    store = RunStore(path)
    store.create_or_check({
        "backend": "optuna", "space_fingerprint": "test",
        "space": {"name": "tiny", "task": {"dataset": "digits", "resolution": 16,
                                           "classes": 10}},
        "data": conftest.digits_data(),
        "objectives": [["val_acc", "maximize"], ["macs", "minimize"]], "options": {}})
    genome = Genome.from_dict(TINY)
    for trial, (acc, macs) in enumerate([(0.5, 100), (0.6, 200)]):
        store.append(TrialRecord(trial=trial, status="ok", hash=f"h{trial}", val_acc=acc,
                                 macs=macs, params=10, genome=genome.to_dict()))
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---- 1, 13: YAML files ----------------------------------------------------------------------
@pytest.mark.parametrize("flag", [None, "--space"])
def test_a_yaml_file_that_is_not_utf8_is_one_line(flag, tmp_path, capsys, no_loading):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe\x00name: x")
    argv = ["show", str(path)] if flag is None else ["search", flag, str(path)]
    assert main(argv) == 2
    error_line(capsys, "bad.yaml", "not UTF-8")


@pytest.mark.parametrize("flag", [None, "--space"])
def test_a_yaml_syntax_error_is_one_line_with_line_and_column(flag, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("name: x\ntask:\n  dataset: digits\n    a: b\n")
    argv = ["show", str(path)] if flag is None else ["search", flag, str(path)]
    assert main(argv) == 2
    line = error_line(capsys, "space.yaml")
    assert line.endswith("space.yaml: not valid YAML at line 4, column 6: "
                         "mapping values are not allowed here")


# ---- 2, 7: genome and input limits, before building -----------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"channels": 1_000_000_000}, "stages[1].channels: 1000000000 is not allowed (at most 4096)"),
    ({"depth": 40}, "stages[1].depth: 40 is not allowed (at most 8)"),
    ({"depth": 8, "fan_in": 8}, "16,777,219 blocks in all is not allowed (at most 1,024"),
    ({"channels": 4096, "depth": 4, "fan_in": 3},
     "conv weights in all is not allowed (at most 500,000,000"),
])
def test_a_genome_too_big_to_build_is_refused_before_building(change, message, tmp_path,
                                                               capsys, no_loading):
    data = json.loads(json.dumps(TINY))
    data["stages"][1].update(change)
    path = write(tmp_path / "big.yaml", data)
    assert main(["show", str(path), "--input", "32"]) == 2
    error_line(capsys, "big.yaml", message)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    error_line(capsys, "big.yaml", message)
    assert not (tmp_path / "run").exists()


def test_a_space_that_reaches_a_depth_too_big_is_refused(tmp_path, capsys, no_loading):
    space = json.loads(json.dumps(SPACE))
    space["genome"]["stages"][0]["depth"] = 40
    path = write(tmp_path / "space.yaml", space)
    assert main(["search", "--space", str(path), "--out", str(tmp_path / "run")]) == 2
    error_line(capsys, "space.yaml", "stages[0].depth: 40 is not allowed (at most 8)")
    assert not (tmp_path / "run").exists()


def test_the_official_genomes_and_spaces_are_within_the_limits():
    for name in zoo.names():
        genome = zoo.load(name)
        assert genome.block_count() * 10 < MAX_BLOCKS
        assert genome.estimated_weights() * 5 < MAX_WEIGHTS
    for path in SPACES.glob("*.yaml"):
        SearchSpace.from_yaml(path)


@pytest.mark.parametrize("shape, message", [
    ("99999999999x16x16",
     "input 99999999999x16x16: 99999999999 channels is not allowed (1 to 1024)"),
    ("3x32x999999999", "input 3x32x999999999: 999999999 px is not allowed (at most 2048"),
])
def test_a_huge_input_is_refused_before_building(shape, message, capsys, no_loading):
    assert main(["show", "dla34", "--input", shape]) == 2
    error_line(capsys, message)


# ---- 3, 10: output folders ------------------------------------------------------------------
@pytest.fixture
def out_file(tmp_path) -> Path:
    path = tmp_path / "taken"
    path.write_text("someone's notes\n")
    return path


@pytest.mark.parametrize("command", ["train", "search", "pareto", "export"])
def test_an_out_that_is_a_file_is_refused_before_loading(command, out_file, tmp_path, capsys,
                                                          no_loading):
    run = make_run(tmp_path / "run")
    before = files_of(run)
    space = write(tmp_path / "space.yaml", SPACE)
    argv = {"train": ["train", "dla34_cifar", "--out", str(out_file)],
            "search": ["search", "--space", str(space), "--out", str(out_file)],
            "pareto": ["pareto", str(run), "--out", str(out_file)],
            "export": ["export", str(run), "--knee", "--out", str(out_file)]}[command]
    assert main(argv) == 2
    error_line(capsys, f"--out {out_file}", "is a file")
    assert out_file.read_text() == "someone's notes\n"
    assert files_of(run) == before


def test_an_out_below_a_file_is_refused(out_file, capsys, no_loading):
    assert main(["train", "dla34_cifar", "--out", str(out_file / "sub")]) == 2
    error_line(capsys, f"{out_file} is a file")


@pytest.mark.parametrize("kept", ["a train's output", "a run without its run.yaml"])
def test_search_refuses_a_folder_that_holds_files_but_no_run(kept, tmp_path, capsys,
                                                             no_loading):
    out = tmp_path / "out"
    if kept == "a train's output":
        out.mkdir()
        (out / "checkpoint.pt").write_bytes(b"old weights")
        (out / "metrics.json").write_text("{}")
    else:
        make_run(out)
        (out / "run.yaml").unlink()
    before = files_of(out)
    space = write(tmp_path / "space.yaml", SPACE)
    assert main(["search", "--space", str(space), "--out", str(out)]) == 2
    error_line(capsys, f"{out}: holds", "but no run.yaml", "another --out")
    assert files_of(out) == before
    (out / "run.yaml").write_text("{}")  # another search's, written after this one looked
    RunStore(out).check_new()  # a resume, then: not refused


def test_search_takes_a_folder_with_only_hidden_files_as_new(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"finder")

    def reached(*args, **kwargs):  # past the folder's check, on to the data
        raise dla_nas.data.DataError("reached the data")

    monkeypatch.setattr(dla_nas.search.core, "load_task_data", reached)
    space = write(tmp_path / "space.yaml", SPACE)
    assert main(["search", "--space", str(space), "--out", str(out)]) == 2
    error_line(capsys, "reached the data")


def test_a_ray_run_of_dla_nas_0_1_has_no_journal_and_is_continued(tmp_path, capsys,
                                                                   monkeypatch):
    """dla-nas 0.1's Ray backend kept its study inside Tune: no study.journal to miss."""
    run = make_run(tmp_path / "run")
    info = yaml.safe_load((run / "run.yaml").read_text())
    space = write(tmp_path / "space.yaml", SPACE)
    info.update(backend="ray", versions={"dla-nas": "0.1.0"}, space_fingerprint=(
        SearchSpace.from_yaml(space).fingerprint()))
    (run / "run.yaml").write_text(yaml.safe_dump(info))

    def reached(*args, **kwargs):  # past the run folder's checks, on to the data
        raise dla_nas.data.DataError("reached the data")

    monkeypatch.setattr(dla_nas.search.core, "load_task_data", reached)
    argv = ["search", "--backend", "ray", "--space", str(space), "--out", str(run)]
    assert main(argv) == 2
    error_line(capsys, "reached the data")
    info["versions"] = {"dla-nas": "0.2.0"}
    (run / "run.yaml").write_text(yaml.safe_dump(info))
    assert main(argv) == 2
    error_line(capsys, "study.journal: missing")


def test_a_run_whose_journal_or_records_were_lost_is_refused(tmp_path, capsys, no_loading):
    store = RunStore(make_run(tmp_path / "run"))  # two search records, no journal
    before = files_of(store.path)
    space = write(tmp_path / "space.yaml", SPACE)
    assert main(["search", "--space", str(space), "--out", str(store.path)]) == 2
    error_line(capsys, f"{store.journal}: missing, but trials.jsonl holds 2 search trial(s)",
               "another --out")
    assert files_of(store.path) == before

    storage = JournalStorage(JournalFileBackend(str(store.journal)))
    study = optuna.create_study(study_name="tiny", storage=storage,
                                directions=["maximize", "minimize"])
    check_study_file(store, "tiny")  # a study begun, nothing told: nothing to lose
    study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0]))
    check_study_file(store, "tiny")  # both there
    records = store.trials_file.read_bytes()
    store.trials_file.unlink()
    # one trial told and unrecorded: Tune tells the study just before its record is written;
    # the Optuna backend after it
    check_study_file(store, "tiny", "ray")
    with pytest.raises(RunError, match=r"trials.jsonl: missing, but study.journal holds 1 "):
        check_study_file(store, "tiny")
    study.add_trial(optuna.trial.create_trial(values=[0.6, 200.0]))
    with pytest.raises(RunError, match=r"trials.jsonl: missing, but study.journal holds 2 "):
        check_study_file(store, "tiny", "ray")
    store.append(TrialRecord(trial=-1, status="ok", hash="b", kind="baseline", name="b"))
    with pytest.raises(RunError, match=r"trials.jsonl: no search record, but study.journal "):
        check_study_file(store, "tiny")
    store.trials_file.write_bytes(records)
    check_study_file(store, "tiny")
    lines = store.journal.read_text().splitlines(keepends=True)
    store.journal.write_text("".join(lines[:1] + [lines[1][:10] + "\n"] + lines[2:]))
    with pytest.raises(RunError, match=r"study.journal: cannot be read \(JSONDecodeError"):
        check_study_file(store, "tiny")  # a resume: one line, not a traceback


def test_train_refuses_a_folder_with_another_runs_results_unless_overwrite(
        tmp_path, capsys, monkeypatch, no_loading):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"old weights")
    (out / "metrics.json").write_text("{}")
    assert main(["train", "dla34_cifar", "--out", str(out)]) == 2
    error_line(capsys, f"--out {out}", "checkpoint.pt and metrics.json", "--overwrite")
    assert files_of(out) == {"checkpoint.pt": b"old weights", "metrics.json": b"{}"}

    def reached(config):  # --overwrite passes the check and goes on to load the data
        raise dla_nas.data.DataError("reached the data")

    monkeypatch.setattr(dla_nas.data, "load_dataset", reached)
    assert main(["train", "dla34_cifar", "--out", str(out), "--overwrite"]) == 2
    error_line(capsys, "reached the data")


# ---- 4, 8, 11, 12: checkpoints --------------------------------------------------------------
@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A real checkpoint of an untrained tiny network for digits (8 px, 1 channel, 10 classes)."""
    torch.manual_seed(0)
    model = build_model(Genome.from_dict(TINY), 10, 1)
    data = types.SimpleNamespace(name="digits", resolution=8, in_chans=1, num_classes=10,
                                 mean=(0.3,), std=(0.4,), class_names=[str(i) for i in range(10)],
                                 resize="squash", labels_per_class=None,
                                 file_ids=lambda split: torch.zeros(0, dtype=torch.int64))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, TrainConfig(), data, {"baseline": None})
    return path


def changed(path: Path, change) -> Path:
    """A copy of the checkpoint at ``path`` with ``change(ckpt)`` applied."""
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    out = path.with_name("changed.pt")
    torch.save(ckpt, out)
    return out


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("num_classes"), "num_classes: missing"),
    (lambda c: c["data"].pop("mean"), "data.mean: missing"),
    (lambda c: c.pop("state_dict"), "state_dict: missing"),
    (lambda c: c.update(genome=None), "genome: missing"),
    (lambda c: c["data"].update(std=[0.0]),
     "data.std: [0.0] is not allowed (a finite number > 0 per input channel, 1 in all)"),
])
def test_a_checkpoint_with_a_missing_or_bad_field_is_refused_at_load(change, message,
                                                                      checkpoint, capsys,
                                                                      no_loading):
    path = changed(checkpoint, change)
    assert main(["eval", str(path), "--device", "cpu"]) == 2
    error_line(capsys, str(path), message)


@pytest.mark.parametrize("change", [
    lambda c: c.update(num_classes=7),
    lambda c: c["genome"]["stages"][1].update(channels=16),
])
def test_a_checkpoint_whose_genome_or_classes_do_not_match_its_weights(change, checkpoint,
                                                                       capsys):
    path = changed(checkpoint, change)
    assert main(["eval", str(path), "--device", "cpu"]) == 2
    error_line(capsys, str(path), "its weights do not match its genome and num_classes")


class _Hostile:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_hostile_checkpoint_is_refused_with_a_whole_sentence(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dla-nas-checkpoint/1", "payload": _Hostile()}, path)
    assert main(["eval", str(path)]) == 2
    line = error_line(capsys, str(path), "Python code or objects (print)", "weights_only=True")
    assert line.endswith("a checkpoint holds only tensors and plain data.")


def test_a_truncated_checkpoint_says_so(checkpoint, capsys):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    assert main(["eval", str(checkpoint)]) == 2
    line = error_line(capsys, str(checkpoint), "truncated, or not a checkpoint file")
    assert "Errno" not in line


# ---- 5, 6, 9: run folders -------------------------------------------------------------------
def test_trials_with_wrong_typed_values_are_skipped_by_status_and_pareto(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    good = json.loads((run / "trials.jsonl").read_text().splitlines()[0])
    changes = [{"val_acc": "high"}, {"macs": "x"}, {"wall_seconds": "x"}, {"repairs": 3}]
    with open(run / "trials.jsonl", "a") as fh:
        fh.writelines(json.dumps({**good, "trial": trial, **change}) + "\n"
                      for trial, change in enumerate(changes, start=2))
    with pytest.warns(UserWarning, match="skipped a corrupt line"):
        assert main(["status", str(run)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipped a corrupt line"):
        assert main(["pareto", str(run), "--out", str(tmp_path / "plots")]) == 0
    with pytest.warns(UserWarning, match="skipped a corrupt line"):
        assert [r.trial for r in load_run(run)] == [0, 1]


@pytest.mark.parametrize("text, message", [
    ("space: [\n", "run.yaml: not valid YAML at line 2"),
    ("- a\n- b\n", "run.yaml: expected a mapping of run settings, got list"),
])
@pytest.mark.parametrize("command", ["status", "pareto", "export", "confirm", "search"])
def test_a_broken_run_yaml_is_one_line(command, text, message, tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path / "run")
    (run / "run.yaml").write_text(text)
    before = files_of(run)
    space = write(tmp_path / "space.yaml", SPACE)
    argv = {"status": ["status", str(run)], "pareto": ["pareto", str(run)],
            "export": ["export", str(run), "--knee"], "confirm": ["confirm", str(run), "--top", "1"],
            "search": ["search", "--space", str(space), "--out", str(run)]}[command]
    assert main(argv) == 2
    error_line(capsys, str(run / "run.yaml"), message)
    assert files_of(run) == before


def test_a_record_appended_after_a_half_written_line_is_kept(tmp_path):
    run = make_run(tmp_path / "run")
    with open(run / "trials.jsonl", "a") as fh:
        fh.write('{"trial": 2, "status": "o')  # a crash in the middle of a write
    RunStore(run).append(TrialRecord(trial=3, status="ok", hash="h3", val_acc=0.7, macs=50))
    assert (run / "trials.jsonl").read_text().splitlines()[-1].startswith('{"trial":3,')
    with pytest.warns(UserWarning, match=r"trials.jsonl:3: skipped a corrupt line"):
        assert [r.trial for r in load_run(run)] == [0, 1, 3]
