"""Folder data as a user brings it: sorted by class, imbalanced, grey saved as RGB. The
evaluation must not depend on the order of the files, and the recipe must fit small data."""

import json

import numpy as np
import pytest
import torch
from conftest import write_folder

from dla_nas import build_model
from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset, make_loader
from dla_nas.train import trainer as training
from dla_nas.train.config import TrainConfig
from dla_nas.train.metrics import classification_metrics
from dla_nas.train.trainer import train


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("sorted"), {"a": 80, "b": 80, "c": 80})


def test_bn_recalibration_draws_a_class_mixed_sample(sorted_folder, monkeypatch):
    # the train split of a folder is sorted by class: its first batches hold one class only
    data = load_dataset(DataConfig(f"folder:{sorted_folder}"))
    assert data.train.labels[:48].unique().tolist() == [0]
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (data.mean, data.std))
    normalised = (data.train.images.float() / 255 - mean) / std
    samples = []
    real = training.recalibrate_bn

    def spy(model, batches):
        x = torch.cat(batches)
        # which train image each calibration image is: the nearest normalised train image
        nearest = torch.cdist(x.flatten(1), normalised.flatten(1)).argmin(1)
        samples.append(data.train.labels[nearest])
        return real(model, batches)

    monkeypatch.setattr(training, "recalibrate_bn", spy)
    train(build_model("plain_cnn_4_8", 3, 1), data,
          TrainConfig(min_steps=0, epochs=2, batch_size=12, device="cpu", bn_recalibration_batches=4))
    assert len(samples) == 2 and all(len(s) == 48 for s in samples)
    for labels in samples:
        assert len(labels.unique()) == 3  # every class, not the first class of the sorted split
    assert not torch.equal(samples[0], samples[1])  # a fresh sample for every evaluation


def test_train_and_evaluation_loaders_ignore_file_order(sorted_folder):
    data = load_dataset(DataConfig(f"folder:{sorted_folder}"))
    first = next(iter(make_loader(data, "train", 16, "cpu", train=True, seed=0)))[1]
    assert len(first.unique()) > 1
    mixed = next(iter(make_loader(data, "train", 16, "cpu", train=False, seed=0, shuffle=True)))
    assert len(mixed[1].unique()) > 1
    ordered = torch.cat([y for _, y in make_loader(data, "val", 7, "cpu", train=False, seed=0)])
    assert torch.equal(ordered, data.val.labels)  # evaluation sees every sample once


def test_a_class_sorted_folder_is_learned_and_evaluated_right(sorted_folder):
    # the whole recipe on sorted files: what `train` reports on val is what a fresh evaluation
    # with the saved BN statistics gives, and it is far above chance
    data = load_dataset(DataConfig(f"folder:{sorted_folder}"))
    torch.manual_seed(0)
    model = build_model("plain_cnn_8_16", 3, 1)
    cfg = TrainConfig(epochs=1, min_steps=60, batch_size=16, lr=0.05, device="cpu")
    result = train(model, data, cfg)
    again = training.evaluate(model, make_loader(data, "val", 50, "cpu", train=False, seed=0), 3)
    assert result.val_acc == pytest.approx(again.acc)
    # 144 train images, 9 steps a pass: epochs of 4 passes (576 images), 2 of them for 60 steps
    assert len(data.train) == 144 and cfg.steps_per_epoch(144) == 36
    assert result.val_acc >= 0.8 and result.epochs_run == 2


def test_min_steps_scales_epochs_to_the_data():
    one_pass = TrainConfig(epochs=3, min_steps=100, batch_size=10, min_epoch_images=0)
    assert one_pass.steps_per_epoch(95) == 9 and one_pass.epochs_for(95) == 12
    # a small split that min_steps stretches: epochs of several passes, the same steps in all
    cfg = TrainConfig(epochs=3, min_steps=100, batch_size=10)
    assert cfg.passes_per_epoch(95) == 4 and cfg.steps_per_epoch(95) == 36
    assert cfg.epochs_for(95) == 3 and cfg.epochs_for(95) * cfg.steps_per_epoch(95) == 108
    assert cfg.epochs_for(10_000) == 3 and cfg.passes_per_epoch(10_000) == 1  # enough steps
    # never more passes than min_steps asks for: 2 steps over 24 images stay 2 steps
    assert TrainConfig(epochs=1, min_steps=2, batch_size=64).steps_per_epoch(24) == 2
    assert TrainConfig(min_steps=0, epochs=3, batch_size=64).epochs_for(5) == 3  # one step per epoch
    with pytest.raises(training.TrainError, match=r"min_steps: -1 is not allowed \(>= 0\)"):
        TrainConfig(min_steps=-1)


def test_metrics_fit_imbalanced_data():
    y_true = np.array([0] * 8 + [1, 1])
    y_pred = np.array([0] * 8 + [0, 0])  # the minority class is never found
    m = classification_metrics(y_true, y_pred, 3, loss=0.5)
    assert m.acc == 0.8 and m.balanced_acc == 0.5
    assert m.per_class_recall == [1.0, 0.0, None]  # class 2 is absent from the split
    assert m.confusion == [[8, 0, 0], [2, 0, 0], [0, 0, 0]]
    assert m.macro_f1 == pytest.approx((2 * 0.8 / 1.8 + 0) / 2)
    assert m.to_dict("val_")["val_balanced_acc"] == 0.5


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_agree_with_scikit_learn():
    """The figures come from the confusion matrix; scikit-learn's, over the classes present,
    are the definition (classes absent from the truth, some predicted, some not)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    for trial in range(20):
        y_true = rng.choice([0, 1, 3, 4], size=40, p=[0.7, 0.1, 0.15, 0.05])
        y_pred = rng.integers(0, 5 if trial % 2 else 3, size=40)
        m = classification_metrics(y_true, y_pred, 6, loss=0.0)
        present = sorted(set(y_true.tolist()))
        assert m.macro_f1 == pytest.approx(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        assert m.balanced_acc == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert m.acc == pytest.approx((y_true == y_pred).mean()) and m.n == 40
    with pytest.raises(ValueError, match=r"predictions outside 0..2: \[-1, 3\]"):
        classification_metrics(np.array([0, 1, 2]), np.array([0, -1, 3]), 3, loss=0.0)


def test_grey_images_saved_as_rgb_load_as_one_channel(tmp_path):
    root = write_folder(tmp_path / "g", {"a": 5, "b": 5}, mode="RGB", fmt="jpg")
    assert load_dataset(DataConfig(f"folder:{root}")).in_chans == 1
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "a" / "9999.png")  # one colour image
    assert load_dataset(DataConfig(f"folder:{root}")).in_chans == 3


def test_train_a_baseline_on_a_folder_writes_inspection_metrics(tmp_path, capsys):
    root = write_folder(tmp_path / "data", {"a": 12, "b": 12, "c": 4})
    out = tmp_path / "run"
    assert main(["train", "resnet8", "--dataset", f"folder:{root}", "--resolution", "16",
                 "--epochs", "1", "--min-steps", "3", "--batch-size", "8", "--augment",
                 "hflip,shift", "--out", str(out), "--json"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # 16 train images, 2 steps a pass: 3 steps are one epoch of 2 passes (4 steps)
    assert metrics["class_names"] == ["a", "b", "c"] and metrics["epochs_run"] == 1
    assert len(metrics["test_confusion"]) == 3 and len(metrics["test_per_class_recall"]) == 3
    assert 0 <= metrics["test_balanced_acc"] <= 1 and "val_macro_f1" in metrics
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.pt"), "--dataset", f"folder:{root}",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["acc"] == pytest.approx(metrics["test_acc"])
    assert again["balanced_acc"] == pytest.approx(metrics["test_balanced_acc"])


def test_bad_augment_is_one_line(tmp_path, capsys):
    assert main(["train", "plain_cnn", "--augment", "rotate", "--epochs", "1"]) == 2
    assert "augment: 'rotate' is not allowed" in capsys.readouterr().err
