"""Exporting trials of a run as model configs (export.py)."""

import json
import shutil
import sys
from pathlib import Path

import conftest
import pytest
import yaml

import dla_nas
from dla_nas.analysis.export import export_run
from dla_nas.arch.cost import genome_cost, model_cost
from dla_nas.arch.genome import Genome
from dla_nas.cli import main
from dla_nas.results import RunError, RunStore, TrialRecord


def tiny(width: int, depth: int) -> Genome:
    return Genome.from_dict({"stem": {"kernel": 3, "levels": [{"channels": 8}]},
                             "stages": [{"channels": width, "depth": 1, "stride": 2},
                                        {"channels": 2 * width, "depth": depth, "fan_in": 3}]})


def make_run(path):
    """A run folder with real genomes and their real costs (16 px): three on the front, a
    dominated one, a reused duplicate, an infeasible and a failed trial, a plain baseline."""
    store = RunStore(path)
    store.create_or_check({
        "backend": "optuna", "space_fingerprint": "test",
        "space": {"name": "tiny", "task": {"dataset": "digits", "resolution": 16, "classes": 10},
                  "proxy": {"epochs": 2, "seed": 0}},
        "data": conftest.digits_data(),
        "objectives": [["val_acc", "maximize"], ["macs", "minimize"]], "options": {}})
    genomes = [tiny(8, 1), tiny(8, 2), tiny(16, 1), tiny(16, 2)]
    costs = [genome_cost(g, (1, 16, 16), 10) for g in genomes]
    accs = [0.7, 0.65, 0.8, 0.9]  # tiny(8, 2) is dominated by tiny(8, 1)

    def record(trial, i, status="ok", **kw):
        return TrialRecord(trial=trial, status=status, hash=genomes[i].canonical_hash(),
                           genome=genomes[i].to_dict(), macs=costs[i].macs,
                           params=costs[i].params,
                           val_acc=accs[i] if status in ("ok", "reused") else None, **kw)

    store.append(TrialRecord(trial=-1, status="ok", hash="plain-1", kind="baseline",
                             name="plain_cnn", val_acc=0.99, macs=10, params=10))
    for r in [record(0, 0), record(1, 1), record(2, 2), record(3, 3, "infeasible"),
              record(4, 3, "failed", reason="out of memory"), record(5, 3),
              record(6, 0, "reused", reused_from=0)]:
        store.append(r)
    return path, {g.canonical_hash(): c for g, c in zip(genomes, costs)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("exp") / "run")


def test_pareto_exports_one_config_per_front_member_and_each_rebuilds(run, tmp_path, capsys):
    path, costs = run
    files = export_run(path, tmp_path, pareto=True)
    assert [f.name for f in files] == [f"tiny-trial{t}-{h}.yaml" for t, h in
                                       [(0, tiny(8, 1).canonical_hash()),
                                        (2, tiny(16, 1).canonical_hash()),
                                        (5, tiny(16, 2).canonical_hash())]]
    for f in files:
        meta = yaml.safe_load(f.read_text())["metadata"]
        assert (meta["in_chans"], meta["num_classes"], meta["resolution"]) == (1, 10, 16)
        assert meta["run"] == str(path) and meta["dla_nas_version"] == dla_nas.__version__
        assert meta["fidelity"] == {"epochs": 2, "seed": 0}
        assert set(meta["objectives"]) == {"val_acc", "macs"}
        model = dla_nas.build_model(f, num_classes=10, in_chans=1)
        cost = model_cost(model, (1, 16, 16))
        assert (cost.params, cost.macs) == (meta["params"], meta["macs"])
        assert (cost.params, cost.macs) == (costs[meta["hash"]].params, costs[meta["hash"]].macs)
    assert main(["show", str(files[0]), "--input", "1x16x16", "--classes", "10", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["hash"] == tiny(8, 1).canonical_hash()
    assert shown["params"] == costs[shown["hash"]].params


def test_knee_best_and_trial_select_one_config(run, tmp_path):
    path, _ = run
    assert [f.name for f in export_run(path, tmp_path, best="macs")] == \
        [f"tiny-trial0-{tiny(8, 1).canonical_hash()}.yaml"]
    assert export_run(path, tmp_path, best="val_acc")[0].name.startswith("tiny-trial5-")
    assert len(export_run(path, tmp_path, knee=True)) == 1
    assert export_run(path, tmp_path, trial=6)[0].name.startswith("tiny-trial6-")  # reused


@pytest.mark.parametrize("kwargs, message", [
    ({"trial": 42}, r"has no trial 42 \(trials: -1\.\.6\)"),
    ({"trial": 3}, r"trial 3 of .* is infeasible.*trained search trials: 0\.\.2, 5\.\.6"),
    ({"trial": 4}, r"trial 4 of .* is failed \(out of memory\)"),
    ({"trial": -1}, r"baseline plain_cnn, which is not a DLA genome"),
    ({"best": "params"}, r"--best: 'params' is not allowed .*one of its objectives: val_acc, macs"),
    ({}, r"exactly one of --pareto, --trial N, --best OBJECTIVE, --knee \(got none\)"),
    ({"pareto": True, "trial": 0}, r"\(got --pareto, --trial\)"),
])
def test_bad_selections_are_refused(run, tmp_path, kwargs, message):
    with pytest.raises(RunError, match=message):
        export_run(run[0], tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_onnx_without_the_package_says_how_to_install_it(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(RunError, match="pip install onnx"):
        export_run(run[0], tmp_path, knee=True, onnx=True)


def test_onnx_export_loads_and_checks(run, tmp_path):
    pytest.importorskip("onnx")
    path = copy_run(run, tmp_path)  # with the normalisation a search writes
    info = yaml.safe_load((path / "run.yaml").read_text())
    info["data"].update(resize="squash", mean=[0.3], std=[0.4])
    (path / "run.yaml").write_text(yaml.safe_dump(info))
    files = export_run(path, tmp_path / "out", best="macs", onnx=True)
    assert [f.suffix for f in files] == [".yaml", ".onnx"] and files[1].stat().st_size > 0
    # the runtime gets the outputs' names and the preprocessing with the graph
    import onnx

    props = {p.key: json.loads(p.value) for p in onnx.load(files[1]).metadata_props}
    meta = yaml.safe_load(files[0].read_text())["metadata"]
    assert props["class_names"] == meta["class_names"] == [str(i) for i in range(10)]
    pre = props["preprocessing"]
    assert pre == meta["preprocessing"]
    assert (pre["resize"], pre["channels"], pre["size"]) == ("squash", "grey", [16, 16])
    assert (pre["mean"], pre["std"]) == ([0.3], [0.4])


def copy_run(run, tmp_path):
    return Path(shutil.copytree(run[0], tmp_path / "copy"))


def test_a_record_that_does_not_rebuild_is_reported(run, tmp_path):
    path = copy_run(run, tmp_path)
    lines = (path / "trials.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    record["macs"] += 1
    lines[1] = json.dumps(record)
    (path / "trials.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match="rebuilding trial 0 of .* gives"):
        export_run(path, tmp_path / "out", trial=0)


def test_a_run_yaml_without_its_data_section_is_one_clear_error(run, tmp_path):
    path = copy_run(run, tmp_path)
    info = yaml.safe_load((path / "run.yaml").read_text())
    del info["data"]["in_chans"]
    (path / "run.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(RunError, match=r"run.yaml: data: missing or incomplete .*in_chans"):
        export_run(path, tmp_path / "out", trial=2)
    assert not (tmp_path / "out").exists()


def test_cli_pareto_and_export_on_a_run(run, tmp_path, capsys):
    run, _costs = run

    assert main(["pareto", str(run), "--out", str(tmp_path / "plots")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # a long run path wraps the table title
    assert "Pareto front of val_acc" in out and "knee" in out
    assert (tmp_path / "plots" / "pareto.png").stat().st_size > 0
    assert main(["export", str(run), "--pareto", "--out", str(tmp_path / "exp")]) == 0
    written = [line for line in capsys.readouterr().out.splitlines() if line.endswith(".yaml")]
    assert written and all(Path(p).exists() for p in written)
    assert main(["export", str(run), "--trial", "999", "--out", str(tmp_path / "x")]) == 2
    assert "has no trial 999" in capsys.readouterr().err
