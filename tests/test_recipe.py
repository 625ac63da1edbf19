"""Training settings as searched dimensions: lr (log scale), weight decay and resolution are
drawn per trial, recorded with the genome, costed at their resolution, exported as the
recipe and used by confirm."""

import math

import conftest
import optuna
import pytest
import yaml

from dla_nas import Genome
from dla_nas.analysis.confirm import ConfirmStore, confirm, run_candidates
from dla_nas.arch.cost import genome_cost
from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset
from dla_nas.results import load_run
from dla_nas.search.space import SearchSpace, SpaceError
from dla_nas.search.specs import FloatRange, RandomSuggester
from dla_nas.train.config import TrainConfig

GENOME = {"stem": {"kernel": 3, "levels": [{"channels": 4}]},
          "stages": [{"channels": [8, 12], "stride": 1, "level_root": False}]}
GENOME_8 = {"stem": {"kernel": 3, "levels": [{"channels": 4}]},
            "stages": [{"channels": 8, "stride": 1, "level_root": False}]}


def space_dict(**task_proxy):
    return {"name": "recipe-tiny", "task": {"dataset": "digits", "resolution": [8, 12],
                                           **task_proxy.get("task", {})},
            "proxy": {"epochs": 1, "batch_size": 256, "lr": {"low": 0.02, "high": 0.2, "log": True},
                      "weight_decay": [5e-4, 0.0], **task_proxy.get("proxy", {})},
            "genome": GENOME}


def test_searched_settings_are_drawn_with_the_genome_and_named_in_the_trial():
    space = SearchSpace.from_dict(space_dict())
    assert [k for k, _ in space.recipe] == ["resolution", "lr", "weight_decay"]
    assert space.task.resolution == 8 and space.proxy.weight_decay == 5e-4
    assert space.proxy.lr == pytest.approx(math.sqrt(0.02 * 0.2))  # a log range's centre
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(12):
        trial = study.ask()
        genome, _, recipe = space.sample_trial(trial, 32)
        assert 0.02 <= recipe.lr <= 0.2 and recipe.weight_decay in (5e-4, 0.0)
        assert {"task.resolution", "proxy.lr", "proxy.weight_decay"} <= set(trial.params)
        assert isinstance(trial.distributions["proxy.lr"], optuna.distributions.FloatDistribution)
        assert trial.distributions["proxy.lr"].log
        drawn.add(recipe.resolution)
        study.tell(trial, 0.0)
    assert drawn == {8, 12}


def test_fixed_settings_draw_and_record_nothing():
    raw = space_dict(task={"resolution": 8}, proxy={"lr": 0.1, "weight_decay": 1e-4})
    space = SearchSpace.from_dict(raw)
    assert space.recipe == () and space.proxy.lr == 0.1
    genome, _, recipe = space.sample_trial(RandomSuggester(__import__("random").Random(0)), 8)
    assert recipe.to_dict() == {}


@pytest.mark.parametrize("change, message", [
    ({"task": {"resolution": {"low": 8, "high": 16}}},
     r"task\.resolution: a range is not allowed \(a value or a choice list\)"),
    ({"task": {"resolution": [8, 4]}}, r"task\.resolution: 4 is not allowed"),
    ({"proxy": {"lr": {"low": 0.2, "high": 0.1}}}, r"proxy\.lr: range .* is not allowed"),
    ({"proxy": {"lr": {"low": 0, "high": 0.1, "log": True}}}, r"> 0 on a log scale"),
    ({"proxy": {"lr": [0.1, -1]}}, r"proxy\.lr: -1 is not allowed \(> 0\)"),
    ({"proxy": {"weight_decay": {"low": 0.1, "high": 0.2, "step": 1}}}, r"proxy\.weight_decay"),
])
def test_bad_searched_settings_name_the_key(change, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(space_dict(**change))


def test_augmentation_may_be_searched_and_each_trial_trains_with_its_own(monkeypatch):
    """``task.augment: [shift, textures]`` lets the search find out whether flips help: the
    choice is drawn with the genome, a baseline gets the first, and the evaluator and
    confirm train on the data with the drawn augmentation."""
    from dla_nas.analysis.confirm import Candidate
    from dla_nas.search import evaluator as evaluator_module
    from dla_nas.search.evaluator import ProxyEvaluator

    raw = space_dict(task={"resolution": 8, "augment": ["shift", "textures"]},
                     proxy={"lr": 0.1, "weight_decay": 5e-4})
    space = SearchSpace.from_dict(raw)
    assert [k for k, _ in space.recipe] == ["augment"] and space.task.augment == "shift"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(8):
        trial = study.ask()
        drawn.add(space.sample_trial(trial, 8)[2].augment)
        assert "task.augment" in trial.params
        study.tell(trial, 0.0)
    assert drawn == {"shift", "textures"}

    seen = []

    def train(model, data, cfg, *args, **kwargs):  # what the trial would train on
        seen.append(data.augment)
        raise RuntimeError("stop")

    monkeypatch.setattr(evaluator_module, "train", train)
    evaluator = ProxyEvaluator(space, "cpu")
    record = evaluator.new_record(0, hash="h", recipe={"augment": "textures"})
    with pytest.raises(RuntimeError, match="stop"):
        evaluator.measure(evaluator.build(Genome.from_dict(GENOME_8)), record)
    assert seen[0].hflip and seen[0].vflip and seen[0].shift
    assert not evaluator.data.augment.hflip  # the shared data keeps the nominal one
    cand = Candidate("trial 0", "search", "h", 0, GENOME_8, searched={"augment": "textures"})
    assert cand.data(evaluator.data).augment == seen[0]
    assert Candidate("b", "baseline", "h").data(evaluator.data) is evaluator.data


@pytest.mark.parametrize("augment", [["shift", "rotate"], 3])
def test_a_bad_searched_augmentation_names_the_key(augment):
    with pytest.raises(SpaceError, match=r"task\.augment: .* is not allowed \(textures, "):
        SearchSpace.from_dict(space_dict(task={"augment": augment}))


def test_float_range_centre_and_values():
    assert FloatRange(0.01, 1.0, log=True).middle == pytest.approx(0.1)
    assert FloatRange(0.0, 1.0).middle == 0.5


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A 6-trial search over lr, weight decay and resolution on digits."""
    tmp = tmp_path_factory.mktemp("recipe")
    space = conftest.write_space(tmp, space_dict())
    out = tmp / "run"
    assert main(["search", "--space", str(space), "--trials", "6", "--sampler", "random",
                 "--out", str(out)]) == 0
    return out


def test_records_carry_the_recipe_and_are_costed_at_its_resolution(searched):
    records = [r for r in load_run(searched) if r.kind == "search"]
    assert len(records) == 6
    for r in records:
        assert set(r.recipe) == {"resolution", "lr", "weight_decay"}
        assert r.input_shape == [1, r.recipe["resolution"], r.recipe["resolution"]]
        assert r.key.startswith(r.hash + "@") and f"lr={r.recipe['lr']!r}" in r.key
        cost = genome_cost(Genome.from_dict(r.genome), tuple(r.input_shape), 10)
        assert (r.macs, r.params) == (cost.macs, cost.params)
    assert len({r.recipe["resolution"] for r in records}) == 2  # both were drawn


def test_export_writes_the_recipe_and_confirm_trains_with_it(searched, tmp_path):
    trial = next(r for r in load_run(searched) if r.kind == "search" and r.val_acc is not None)
    assert main(["export", str(searched), "--trial", str(trial.trial),
                 "--out", str(tmp_path / "exp")]) == 0
    meta = yaml.safe_load(next((tmp_path / "exp").glob("*.yaml")).read_text())["metadata"]
    assert meta["recipe"]["lr"] == trial.recipe["lr"]
    assert meta["recipe"]["weight_decay"] == trial.recipe["weight_decay"]
    assert meta["resolution"] == meta["recipe"]["resolution"] == trial.recipe["resolution"]
    assert meta["recipe"]["searched"] == ["lr", "resolution", "weight_decay"]

    cand = run_candidates(searched, pareto=False, top=None, trials=[trial.trial],
                          baselines=[])[0]
    assert cand.hash == trial.key and cand.searched == trial.recipe
    other = 20 - trial.recipe["resolution"]  # the other choice: 8 <-> 12
    data = load_dataset(DataConfig("digits", resolution=other))
    loaded = []

    def data_at(resolution):
        loaded.append(resolution)
        return load_dataset(DataConfig("digits", resolution=resolution))

    store = ConfirmStore(tmp_path / "confirm.jsonl")
    (record,) = confirm([cand], [0], data, TrainConfig(min_steps=0, epochs=1, device="cpu"), store,
                        data_at=data_at)
    assert loaded == [trial.recipe["resolution"]]
    assert record.searched == trial.recipe and record.hash == trial.key
    assert record.recipe["lr"] == 0.05  # the shared recipe stays the confirmation's own


def test_an_exported_trial_is_enqueued_with_the_settings_it_drew(searched, tmp_path, capsys):
    """`search --enqueue` of an exported config queues its network with the settings its
    trial drew (``metadata.recipe``, as ``searched`` names them; a user may edit them), a
    bare genome with the nominal ones; a setting the space cannot draw is refused by name."""
    from dla_nas.search.core import SearchOptions
    from dla_nas.search.optuna_backend import start

    trial = next(r for r in load_run(searched) if r.kind == "search" and r.val_acc is not None)
    assert main(["export", str(searched), "--trial", str(trial.trial),
                 "--out", str(tmp_path / "exp")]) == 0
    config = yaml.safe_load(next((tmp_path / "exp").glob("*.yaml")).read_text())
    other = 20 - trial.recipe["resolution"]  # the other choice: 8 <-> 12
    config["metadata"]["recipe"].update(lr=0.15, resolution=other)  # edited by hand
    edited, bare = tmp_path / "edited.yaml", tmp_path / "bare.yaml"
    edited.write_text(yaml.safe_dump(config))
    bare.write_text(yaml.safe_dump(config["genome"]))
    space = conftest.write_space(tmp_path, space_dict())
    nominal = SearchSpace.from_yaml(str(space))
    opts = SearchOptions(space=str(space), trials=2, out=str(tmp_path / "run"),
                         warm_start="none", enqueue=[str(edited), str(bare)])
    study = start(opts)[1]
    drawn = [study.ask() for _ in range(2)]
    for t in drawn:
        assert nominal.sample_trial(t, 8)[0].canonical_hash() == trial.hash
    assert [t.params["proxy.lr"] for t in drawn] == [0.15, nominal.proxy.lr]
    assert [t.params["task.resolution"] for t in drawn] == [other, nominal.task.resolution]
    assert [t.params["proxy.weight_decay"] for t in drawn] == [trial.recipe["weight_decay"],
                                                               nominal.proxy.weight_decay]

    recipe = config["metadata"]["recipe"]
    for change, says in (({"lr": 0.5}, "not in the space recipe-tiny (lr 0.5: the space "
                                       "draws 0.02 to 0.2)"),
                         ({"lr": 1}, "(lr 1: the space draws"),  # an int, not a float
                         ({"resolution": 8.0}, "(resolution 8.0: the space draws 8, 12)"),
                         ({"searched": "lr"}, "metadata.recipe must map settings to values")):
        config["metadata"]["recipe"] = {**recipe, **change}
        edited.write_text(yaml.safe_dump(config))
        capsys.readouterr()
        new = tmp_path / "new"
        assert main(["search", "--space", str(space), "--out", str(new), "--enqueue",
                     str(edited)]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1 and not new.exists()


def test_the_exported_recipe_has_the_fine_tuning_settings_the_trial_trained_with():
    """A trial's searched backbone lr and frozen epochs, else the proxy's (over an ImageNet
    backbone, the fine-tuning ones: the new head trains alone for an epoch); a hand design
    without pretrained weights trained from scratch, as the recipe says."""
    from pathlib import Path

    from dla_nas.analysis.export import _proxy, training_recipe
    from dla_nas.results import TrialRecord

    space = Path(__file__).parents[1] / "search_spaces" / "lite0-few-labels.yaml"
    proxy = _proxy(Path("run"), {"space": yaml.safe_load(space.read_text())})
    searched = TrialRecord(1, "ok", "h", recipe={"backbone_lr_mult": 1.0, "resolution": 96})
    recipe = training_recipe(proxy, searched, 96)
    assert (recipe["backbone_lr_mult"], recipe["freeze_epochs"]) == (1.0, 1)
    assert recipe["searched"] == ["backbone_lr_mult", "resolution"]
    scratch = TrialRecord(-1, "ok", "h", kind="baseline")
    assert (training_recipe(proxy, scratch, 96)["backbone_lr_mult"],
            training_recipe(proxy, scratch, 96)["freeze_epochs"]) == (1.0, 0)
    pretrained = TrialRecord(-2, "ok", "h", kind="baseline", pretrained={"loaded": 10})
    assert training_recipe(proxy, pretrained, 96)["backbone_lr_mult"] == 0.1
