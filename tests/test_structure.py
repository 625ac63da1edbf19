"""The package's shape: its public imports and no import hooks, no module-level mutable
state, one error base, the rules that validate config fields, and what the search backends
leave behind."""

import ast
import importlib
import os
from pathlib import Path

import conftest
import pytest

import dla_nas
from dla_nas.checks import check, integer, number, one_of
from dla_nas.cli import main
from dla_nas.errors import DlaNasError, OptionError, TrainError

PACKAGE = Path(dla_nas.__file__).parent
SPACE = {
    "name": "test-structure",
    "task": {"dataset": "digits", "resolution": 8},
    "proxy": {"epochs": 1, "batch_size": 128},
    "genome": {"stem": {"kernel": 3, "levels": [{"channels": 4}]},
               "stages": [{"channels": 8}]},
}


def test_the_package_imports_with_no_finder_of_its_own():
    # the 0.1 module paths (dla_nas.zoo, dla_nas.training, ...) were an unreleased layout:
    # gone, and with them the meta-path alias that served them
    import subprocess
    import sys

    probe = ("import sys, dla_nas, dla_nas.cli; "
             "print([type(f).__module__ for f in sys.meta_path])")
    finders = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True).stdout
    assert "dla_nas" not in finders
    for old in ("zoo", "training", "space", "pareto"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"dla_nas.{old}")


def test_the_public_imports_of_the_readme_work():
    from dla_nas.arch import zoo
    from dla_nas.results import load_run
    from dla_nas.train import TrainConfig

    assert zoo.names()[0] == "dla34"
    assert load_run is dla_nas.results.load_run
    assert TrainConfig().epochs > 0
    assert dla_nas.build_model("dla34_cifar", num_classes=10) is not None


def _module_level_mutables(source: str, name: str) -> list[str]:
    """Lower-case module-level names bound to a dict/list/set display or call, and ``global``
    statements. Public UPPER_CASE names are constant tables by convention and ``__all__`` is
    data; a private one (``_CACHE = {}``) is state. (The Ray worker's evaluator, cached per
    process with ``functools.lru_cache(maxsize=1)``, is the one deliberate cache.)"""
    tree = ast.parse(source)
    found = [f"{name}:{n.lineno} global" for n in ast.walk(tree) if isinstance(n, ast.Global)]
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        value = getattr(node, "value", None)
        mutable = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp,
                                     ast.SetComp)) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in ("dict", "list", "set", "defaultdict"))
        for t in targets:
            if (mutable and isinstance(t, ast.Name) and not t.id.startswith("__")
                    and not (t.id.isupper() and not t.id.startswith("_"))):
                found.append(f"{name}:{node.lineno} {t.id}")
    return found


def test_no_module_level_mutable_state():
    found = [hit for path in sorted(PACKAGE.rglob("*.py"))
             for hit in _module_level_mutables(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert not found, found
    probe = "_CACHE: dict = {}\nx = []\nLIMITS = {}\ndef f():\n    global x\n"
    assert len(_module_level_mutables(probe, "probe.py")) == 3  # the scan finds them


def test_every_user_error_has_one_base():
    from dla_nas import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and c is not DlaNasError]
    assert len(classes) >= 7 and all(issubclass(c, DlaNasError) for c in classes)
    assert issubclass(DlaNasError, ValueError)


def test_rules_name_the_field_and_what_is_allowed():
    with pytest.raises(TrainError, match=r"^epochs: '8' is not allowed \(an integer >= 1\)$"):
        check("epochs", "8", integer(1), TrainError)
    assert number(0, low_open=True)(0) == "> 0"
    assert number(0, 1, high_open=True)(1) == "0 <= x < 1"
    assert one_of(("a", "b"))(True) == "one of a, b"
    assert integer(1, 8)(9) == "at most 8" and integer(1)(3) is None


def test_train_config_checks_types_with_the_same_rules():
    from dla_nas.train.config import TrainConfig

    with pytest.raises(TrainError, match=r"epochs: '8' is not allowed \(an integer >= 1\)"):
        TrainConfig(epochs="8")
    with pytest.raises(TrainError, match=r"lr: 0 is not allowed \(> 0\)"):
        TrainConfig(lr=0)
    with pytest.raises(TrainError, match=r"warmup_epochs: 9 is not allowed \(0 <= x <= 8\)"):
        TrainConfig(epochs=8, warmup_epochs=9)


@pytest.mark.parametrize("url, message", [
    ("ftp://host/db", "--storage: 'ftp://host/db' is not allowed"),
    ("not a url", "--storage: 'not a url' is not allowed"),
    ("sqlite:////no/such/folder/s.db", "the folder /no/such/folder does not exist"),
])
def test_a_bad_storage_is_refused_before_anything_is_written(tmp_path, capsys, url, message):
    space, out = conftest.write_space(tmp_path, SPACE), tmp_path / "run"
    assert main(["search", "--space", str(space), "--out", str(out), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_tune_environment_is_restored(monkeypatch):
    from dla_nas.search.ray_cluster import TUNE_ENVIRONMENT, tune_environment

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "7")  # the caller's value is kept
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    before = dict(os.environ)
    with tune_environment():
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "7"
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == TUNE_ENVIRONMENT["RAY_AIR_NEW_OUTPUT"]
        os.environ["PYTHONBREAKPOINT"] = "ray.util.rpdb._driver_set_trace"  # as ray.init does
    assert dict(os.environ) == before


def test_the_ray_driver_is_found_by_its_run_only_inside_its_context(tmp_path):
    from types import SimpleNamespace

    from dla_nas.search.ray_searcher import driving, live_driver

    driver = SimpleNamespace(run=str(tmp_path / "a"))
    assert live_driver(driver.run) is None
    with driving(driver):
        assert live_driver(driver.run) is driver
        assert live_driver(str(tmp_path / "b")) is None
    assert live_driver(driver.run) is None


def test_a_ray_trial_goes_back_to_the_folder_it_started_in(tmp_path):
    from dla_nas.search.ray_trial import in_folder

    start = os.getcwd()
    with in_folder(str(tmp_path)):
        assert os.getcwd() == str(tmp_path)
    assert os.getcwd() == start


def test_flags_errors_are_option_errors(tmp_path):
    from dla_nas.search.core import SearchOptions

    with pytest.raises(OptionError, match=r"--trials: 0 is not allowed \(>= 1\)"):
        SearchOptions(space="x", trials=0, out="o").check()


def test_each_baseline_is_handed_over_before_the_next_one_trains():
    from dla_nas.results import TrialRecord
    from dla_nas.search.core import evaluate_baselines

    trained = []

    class Evaluator:
        def evaluate_baseline(self, name, trial):
            trained.append(name)
            return TrialRecord(trial=trial, status="ok", hash=name, kind="baseline", name=name)

    records = evaluate_baselines(Evaluator(), [(-1, "a"), (-2, "b")])
    assert next(records).name == "a" and trained == ["a"]  # stored before "b" starts
    assert [r.name for r in records] == ["b"]
