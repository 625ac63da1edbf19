"""Data the defaults were not fitted to: imbalanced classes (class-balanced sampling, ranking by
balanced accuracy), oriented content (no flip by default), odd sizes (squash, pad, crop), and
one recipe from search to confirm."""

import json

import conftest
import numpy as np
import pytest
import torch
from conftest import write_folder
from PIL import Image

from dla_nas.analysis.confirm import ConfirmRecord, summarize
from dla_nas.cli import main
from dla_nas.data import Augment, DataConfig, DeviceLoader, Split, load_dataset, make_loader
from dla_nas.data.config import balanced_sampling
from dla_nas.data.images import _decode
from dla_nas.results import RunStore
from dla_nas.search.space import SearchSpace
from dla_nas.train.config import TrainConfig

SPACE = {
    "name": "unseen-tiny",
    "task": {"dataset": "digits", "resolution": 8},  # replaced by --dataset
    "proxy": {"epochs": 1, "min_steps": 2, "batch_size": 16},
    "objectives": {"val_acc": "maximize", "macs": "minimize"},
    "genome": {"stem": {"kernel": 3, "levels": [{"channels": 4}]},
               "stages": [{"channels": 8, "stride": 2}]},
}
RECIPE = ["--epochs", "1", "--min-steps", "2", "--batch-size", "16", "--seeds", "0"]


def flat(text: str) -> str:
    """Console output without the line breaks rich wraps it at."""
    return " ".join(text.split())


def _labels(counts):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def test_auto_sampling_balances_only_past_the_imbalance_ratio():
    assert balanced_sampling("auto", [30, 3])  # 10x
    assert not balanced_sampling("auto", [30, 10])  # 3x: at the ratio, not past it
    assert not balanced_sampling("auto", [5, 5, 0])  # a class with no train image is left out
    assert balanced_sampling("balanced", [5, 5]) and not balanced_sampling("uniform", [30, 1])


def test_balanced_batches_draw_every_class_equally_often():
    labels = _labels([270, 30])
    split = Split(torch.zeros(300, 1, 2, 2, dtype=torch.uint8), labels)
    loader = DeviceLoader(split, 100, mean=[0], std=[1], shuffle=True, seed=0, balanced=True)
    drawn = torch.cat([y for _ in range(20) for _, y in loader])
    assert len(drawn) == 20 * 300  # an epoch is still len(split) samples
    share = (drawn == 1).float().mean().item()
    assert 0.45 < share < 0.55, share  # 0.1 when drawn uniformly
    uniform = torch.cat([y for _, y in DeviceLoader(split, 100, mean=[0], std=[1],
                                                   shuffle=True, seed=0)])
    assert (uniform == 1).sum() == 30  # a permutation: each image once


def test_an_imbalanced_folder_trains_with_balanced_batches_and_says_so(tmp_path, capsys):
    root = write_folder(tmp_path / "tiles", {"Free": 40, "Fray": 5})
    out = tmp_path / "run"
    assert main(["train", "plain_cnn_8_16_32", "--dataset", f"folder:{root}", "--resolution",
                 "16", "--epochs", "1", "--min-steps", "2", "--out", str(out)]) == 0
    err = flat(capsys.readouterr().err)
    assert "batches are class-balanced (--sampling auto" in err
    assert "augment shift 0.125 (reflect); balanced sampling, torch init, resize squash" in err
    assert json.loads((out / "metrics.json").read_text())["sampling"] == "balanced"
    assert main(["train", "plain_cnn_8_16_32", "--dataset", f"folder:{root}", "--resolution",
                 "16", "--epochs", "1", "--min-steps", "2", "--out", str(out), "--overwrite",
                 "--sampling", "uniform"]) == 0
    assert "batches are not class-balanced" in flat(capsys.readouterr().err)
    assert json.loads((out / "metrics.json").read_text())["sampling"] == "uniform"


def _oriented_folder(root):
    """Two classes of images whose top-left quarter is bright: the way up and the left side
    mean something here, as in a digit or an arrow."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 60, (16, 16)).astype(np.uint8)
            img[:8, :8] += 180
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_a_folder_is_not_flipped_by_default(tmp_path):
    """Every augmented training image keeps its bright corner top-left: a flip either way
    (which this test exists to catch) would move it."""
    data = load_dataset(DataConfig(f"folder:{_oriented_folder(tmp_path / 'arrows')}",
                                   resolution=16))
    assert data.augment == Augment(shift=0.125)
    for seed in range(5):
        for x, _ in make_loader(data, "train", 8, "cpu", train=True, seed=seed):
            top, bottom = x[:, 0, :6].mean((1, 2)), x[:, 0, 10:].mean((1, 2))
            left, right = x[:, 0, :, :6].mean((1, 2)), x[:, 0, :, 10:].mean((1, 2))
            assert bool((top > bottom).all() and (left > right).all())
    textures = load_dataset(DataConfig(f"folder:{tmp_path / 'arrows'}", resolution=16,
                                       augment=Augment.parse("textures")))
    x = torch.cat([x for x, _ in make_loader(textures, "train", 8, "cpu", train=True, seed=0)])
    assert bool((x[:, 0, :, :6].mean((1, 2)) < x[:, 0, :, 10:].mean((1, 2))).any())


def _wide_image(path, w=40, h=10):
    """Two ramps, steep across and gentle down, so that a pixel's value tells where it came
    from."""
    ramp = (np.linspace(0, 200, w)[None, :] + np.linspace(0, 55, h)[:, None]).astype(np.uint8)
    Image.fromarray(ramp).save(path)
    return Image.fromarray(ramp)


def test_pad_keeps_the_aspect_ratio_and_crop_keeps_the_centre(tmp_path):
    image = _wide_image(tmp_path / "wide.png")
    squash = _decode(str(tmp_path / "wide.png"), 1, 16, "squash")[0]
    pad = _decode(str(tmp_path / "wide.png"), 1, 16, "pad")[0]
    crop = _decode(str(tmp_path / "wide.png"), 1, 16, "crop")[0]
    assert squash.shape == pad.shape == crop.shape == (16, 16)
    # pad: the image at 16 x 4 (its 4:1 kept) in rows 6-9, mirrored above and below
    fitted = np.array(image.resize((16, 4), Image.Resampling.BILINEAR))
    assert np.array_equal(pad[6:10], fitted)
    assert np.array_equal(pad[5], pad[6]) and np.array_equal(pad[10], pad[9])
    # crop: the image at 64 x 16 (its 4:1 kept), the middle 16 columns
    scaled = np.array(image.resize((64, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(crop, scaled[:, 24:40])
    assert np.array_equal(squash, np.array(image.resize((16, 16), Image.Resampling.BILINEAR)))


def test_resize_mode_is_kept_with_the_data_and_the_checkpoint(tmp_path, capsys):
    root = tmp_path / "odd"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            _wide_image(root / name / f"{i}.png", w=30 + 10 * (name == "b"), h=10 + i)
    out = tmp_path / "run"
    assert main(["train", "plain_cnn_8_16_32", "--dataset", f"folder:{root}", "--resolution",
                 "16", "--epochs", "1", "--min-steps", "1", "--resize", "pad",
                 "--out", str(out)]) == 0
    assert "resize pad" in flat(capsys.readouterr().err)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["data"]["resize"] == "pad"
    assert main(["eval", str(out / "checkpoint.pt"), "--dataset", f"folder:{root}", "--json",
                 "--split", "val"]) == 0
    padded = json.loads(capsys.readouterr().out.strip())
    assert main(["eval", str(out / "checkpoint.pt"), "--dataset", f"folder:{root}/.", "--json",
                 "--split", "val", "--resize", "squash"]) == 0
    squashed = json.loads(capsys.readouterr().out.strip())
    assert padded["loss"] != squashed["loss"]  # eval read the checkpoint's mode, not squash
    # the checkpoint knows its train files: none are in the val split it was made with,
    # however the folder is spelt ...
    assert padded["images_seen_in_training"] == squashed["images_seen_in_training"] == 0
    # without --dataset, eval reads the data the checkpoint trained on (not digits)
    assert main(["eval", str(out / "checkpoint.pt"), "--json", "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["loss"] == padded["loss"]
    # ... but another split of the folder (or a folder that changed) puts some there: said
    assert main(["eval", str(out / "checkpoint.pt"), "--dataset", f"folder:{root}/", "--json",
                 "--split-seed", "1"]) == 0
    said = capsys.readouterr()
    result = json.loads(said.out.strip())
    seen = result["images_seen_in_training"]
    assert seen > 0
    assert (f"warning: {seen} of the {result['images']} test images were in the train split of "
            f"{out / 'checkpoint.pt'}") in flat(said.err)


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory):
    """A one-trial search on an imbalanced folder (40 : 6) whose space ranks by val_acc."""
    tmp = tmp_path_factory.mktemp("unseen")
    root = write_folder(tmp / "data", {"Free": 40, "Fray": 6})
    space = conftest.write_space(tmp, SPACE)
    out = tmp / "run"
    assert main(["search", "--space", str(space), "--dataset", f"folder:{root}",
                 "--resolution", "16", "--trials", "1", "--out", str(out)]) == 0
    return out, root, space


@pytest.fixture(scope="module")
def uniform_run(imbalanced_run, tmp_path_factory):
    """The same search told to draw uniform batches."""
    _, root, space = imbalanced_run
    out = tmp_path_factory.mktemp("uniform") / "run"
    assert main(["search", "--space", str(space), "--dataset", f"folder:{root}",
                 "--resolution", "16", "--trials", "1", "--sampling", "uniform",
                 "--out", str(out)]) == 0
    return out


def test_a_search_on_imbalanced_data_samples_balanced_and_ranks_by_balanced_accuracy(
        imbalanced_run, uniform_run):
    info = RunStore(imbalanced_run[0]).info()
    assert info["data"]["sampling"] == "balanced"
    assert dict(info["objectives"]) == {"val_balanced_acc": "maximize", "macs": "minimize"}
    assert any("class-balanced" in w for w in info["data"]["warnings"])
    # uniform batches: plain accuracy stays the objective the space asked for
    info = RunStore(uniform_run).info()
    assert info["data"]["sampling"] == "uniform" and info["space"]["proxy"]["sampling"] == \
        "uniform"
    assert dict(info["objectives"]) == {"val_acc": "maximize", "macs": "minimize"}


def test_confirm_keeps_the_search_sampling_unless_told(uniform_run, tmp_path, capsys):
    # the search drew uniform batches where confirm's own default would balance them
    assert main(["confirm", str(uniform_run), "--trial", "0", *RECIPE]) == 0
    printed = capsys.readouterr()
    assert "uniform sampling, torch init, resize squash" in flat(printed.err)
    assert "macro F1" in printed.out + printed.err  # beside accuracy and balanced accuracy
    record = json.loads((uniform_run / "confirm.jsonl").read_text().splitlines()[0])
    assert summarize([ConfirmRecord.from_dict(record)])[0].test_macro_f1 == \
        record["test_macro_f1"]
    assert "sampling" not in record["recipe"]  # uniform: as files before sampling existed
    other = tmp_path / "balanced.jsonl"
    assert main(["confirm", str(uniform_run), "--trial", "0", *RECIPE, "--sampling",
                 "balanced", "--out", str(other)]) == 0
    assert "balanced sampling, torch init, resize squash" in flat(capsys.readouterr().err)
    assert json.loads(other.read_text().splitlines()[0])["recipe"]["sampling"] == "balanced"


def test_the_confirmed_table_shows_the_accuracy_the_run_ranks_by(imbalanced_run, capsys):
    out = imbalanced_run[0]
    assert main(["confirm", str(out), "--trial", "0", *RECIPE]) == 0
    assert "proxy val bal. acc" in capsys.readouterr().err
    record = json.loads((out / "confirm.jsonl").read_text().splitlines()[0])
    trial = next(r for r in RunStore(out).records() if r.trial == 0)
    assert record["proxy_val_balanced_acc"] == trial.val_balanced_acc is not None
    confirmed = summarize([ConfirmRecord.from_dict(record)])[0]
    assert confirmed.val("val_balanced_acc") == (record["val_balanced_acc"],
                                                 trial.val_balanced_acc)
    assert confirmed.val("val_acc") == (record["val_acc"], trial.val_acc)
    assert main(["status", str(out)]) == 0
    assert "val bal. acc" in flat(capsys.readouterr().out)


def test_a_run_keeps_its_init_and_one_made_before_that_started_official(imbalanced_run):
    """run.yaml holds the init its trials started from, so a resume or confirm starts the
    same way whatever the default becomes; the committed reference runs, made before it was
    kept, started from the official init."""
    info = RunStore(imbalanced_run[0]).info()
    assert info["space"]["proxy"]["init"] == "torch" == SearchSpace.of_run(info).proxy.init
    proxy = {k: v for k, v in info["space"]["proxy"].items() if k != "init"}
    older = {**info, "space": {**info["space"], "proxy": proxy}}
    assert SearchSpace.of_run(older).proxy.init == "official"


def test_a_run_made_before_its_init_was_kept_resumes_and_confirms_as_it_began(
        imbalanced_run, tmp_path, capsys):
    """A run.yaml written before ``proxy.init`` and ``balanced_loss`` went (the committed
    reference runs): the search resumes with the same fingerprint and the official init,
    and confirm goes on in a confirm.jsonl whose recipe has ``balanced_loss: false``."""
    import shutil

    import yaml

    from dla_nas.search.core import SearchOptions, open_run

    out, root, space = imbalanced_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / "confirm.jsonl").unlink(missing_ok=True)  # another test's, made with this init
    info = RunStore(old).info()
    del info["space"]["proxy"]["init"]
    info["space_fingerprint"] = SearchSpace.from_dict(info["space"]).fingerprint()
    (old / "run.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    opts = SearchOptions(space=str(space), trials=1, out=str(old), dataset=f"folder:{root}",
                         resolution=16)
    run = open_run(opts, "optuna")
    assert run.space.proxy.init == "official" and run.resumed
    assert main(["confirm", str(old), "--trial", "0", *RECIPE]) == 0
    lines = (old / "confirm.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert record["recipe"].get("init") is None  # official: as the files before it
    record["recipe"]["balanced_loss"] = False
    (old / "confirm.jsonl").write_text(json.dumps(record) + "\n")
    capsys.readouterr()
    assert main(["confirm", str(old), "--trial", "0", *RECIPE]) == 0  # nothing left to train
    assert "another recipe" not in capsys.readouterr().err
    assert main(["confirm", str(old), "--trial", "0", *RECIPE, "--init", "torch"]) == 2
    assert "made with another recipe (init None -> 'torch')" in capsys.readouterr().err


def test_train_starts_from_the_init_asked_for(tmp_path, monkeypatch):
    from dla_nas.arch import builder

    built = []

    def build_model(*args, **kwargs):
        built.append(kwargs["init"])
        return real(*args, **kwargs)

    real = builder.build_model  # cmd_train imports it when it runs
    monkeypatch.setattr(builder, "build_model", build_model)
    root = write_folder(tmp_path / "data", {"a": 8, "b": 8})
    for init in ("official", "torch"):
        out = tmp_path / init
        assert main(["train", "plain_cnn_4_8", "--dataset", f"folder:{root}", "--resolution",
                     "8", "--epochs", "1", "--min-steps", "1", "--init", init, "--out",
                     str(out), "--json"]) == 0
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        assert ckpt["train_config"]["init"] == init
    assert built == ["official", "torch"]


@pytest.mark.parametrize("flag, message", [
    (["--augment", "rotate"], "--augment: 'rotate' is not allowed (textures, objects"),
    (["--resize", "stretch"], "--resize: invalid choice: 'stretch'"),
    (["--sampling", "sqrt"], "--sampling: invalid choice: 'sqrt'"),
])
def test_bad_data_flags_of_search_are_one_line(flag, message, tmp_path, capsys):
    space = conftest.write_space(tmp_path, SPACE)
    try:  # argparse refuses a choice by exiting; the others come back as a status
        code = main(["search", "--space", str(space), "--trials", "1", "--out",
                     str(tmp_path / "run"), *flag])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_space_refuses_an_unknown_resize():
    from dla_nas.errors import SpaceError
    from dla_nas.search.space import SearchSpace

    with pytest.raises(SpaceError, match=r"task.resize: 'stretch' is not allowed"):
        SearchSpace.from_dict({**SPACE, "task": {"dataset": "digits", "resize": "stretch"}})
    assert TrainConfig().sampling == "auto"


def test_a_model_that_learnt_little_is_flagged():
    from dla_nas.train.metrics import learnt_little

    names = ["Blowhole", "Free", "Fray"]
    # 268 of 269 images called Free, as the magnetic-tile model did
    all_free = [[0, 20, 0], [0, 240, 0], [0, 8, 1]]
    assert learnt_little(all_free, names) == (
        "the model answers Free for 268 of 269 images: it has learnt little beyond the "
        "largest class")
    # no class dominates the answers, but the recalls average to chance (1/3)
    chance = [[4, 8, 8], [80, 90, 70], [3, 3, 3]]
    assert "at chance level (0.33 for 3 classes)" in learnt_little(chance, names)
    good = [[15, 5, 0], [10, 220, 10], [1, 1, 7]]
    assert learnt_little(good, names) is None
    # a split where one class really is almost everything: answering it is no sign
    assert learnt_little([[2, 0], [0, 98]], ["a", "b"]) is None


def test_eval_warns_when_the_model_learnt_little(tmp_path, capsys):
    """A checkpoint whose head is pushed to answer Free for everything is flagged by eval."""
    root = write_folder(tmp_path / "tiles", {"Free": 40, "Fray": 5})
    out = tmp_path / "run"
    assert main(["train", "plain_cnn_8_16_32", "--dataset", f"folder:{root}", "--resolution",
                 "16", "--epochs", "1", "--min-steps", "1", "--out", str(out)]) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    bias = [k for k in ckpt["state_dict"] if k.startswith("fc") and k.endswith("bias")]
    assert len(bias) == 1
    ckpt["state_dict"][bias[0]] = torch.tensor([-100.0, 100.0])  # Fray, Free
    torch.save(ckpt, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.pt"), "--dataset", f"folder:{root}"]) == 0
    assert "warning: test split: the model answers Free for 9 of 9 images" in flat(
        capsys.readouterr().err)


def test_a_confirmed_candidate_that_learnt_little_carries_a_warning():
    """Over its seeds together, a candidate that calls (nearly) everything Free is flagged in
    the confirmed table and in what export writes."""
    def record(seed, confusion):
        return ConfirmRecord(kind="search", label="trial 3", hash="h", seed=seed, trial=3,
                             test_confusion=confusion)

    lazy = summarize([record(0, [[0, 5], [0, 45]]), record(1, [[1, 4], [0, 45]])],
                     ["Fray", "Free"])[0]
    assert lazy.warning == ("the model answers Free for 99 of 100 images: it has learnt "
                            "little beyond the largest class")
    fine = summarize([record(0, [[4, 1], [2, 43]]), record(1, [[5, 0], [1, 44]])])[0]
    assert fine.warning is None
