"""Few labels: ``--labels-per-class N`` trains on a seeded, stratified subset of the train split
(val and test unchanged), in train, search and confirm, and says so where it is recorded."""

import json

import conftest
import numpy as np
import pytest
import torch
import yaml
from conftest import write_folder

from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset
from dla_nas.errors import DataError


def test_a_subset_of_n_a_class_keeps_val_and_test_and_nests(tmp_path):
    root = write_folder(tmp_path / "data", {"a": 30, "b": 6})  # b has 4 train images
    full = load_dataset(DataConfig(f"folder:{root}"))
    few = {n: load_dataset(DataConfig(f"folder:{root}", labels_per_class=n)) for n in (2, 5)}
    assert torch.bincount(few[2].train.labels).tolist() == [2, 2]
    assert torch.bincount(few[5].train.labels).tolist() == [5, 4]  # all of a smaller class
    for data in few.values():
        assert torch.equal(data.val.index, full.val.index)
        assert torch.equal(data.test.index, full.test.index)
    two, five = (set(few[n].train.index.tolist()) for n in (2, 5))
    assert two < five <= set(full.train.index.tolist())  # 2 a class are among the 5
    again = load_dataset(DataConfig(f"folder:{root}", labels_per_class=2))
    assert torch.equal(again.train.index, few[2].train.index)  # seeded
    other = load_dataset(DataConfig(f"folder:{root}", labels_per_class=2, seed=1))
    assert not np.array_equal(other.train.index.numpy(), few[2].train.index.numpy())
    assert "train 4 (2 a class)" in few[2].summary()


@pytest.mark.parametrize("kw, message", [
    ({"labels_per_class": 0}, "labels_per_class: 0 is not allowed"),
    ({"labels_per_class": 3, "train_fraction": 0.5}, "give one of them"),
])
def test_bad_few_label_settings_are_one_line(kw, message):
    with pytest.raises(DataError, match=message):
        DataConfig("digits", **kw)


def test_train_with_few_labels_records_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "plain_cnn_4_8", "--dataset", "digits", "--epochs", "1",
                 "--min-steps", "1", "--labels-per-class", "3", "--out", str(out)]) == 0
    assert "train 30 (3 a class) / val 360 / test 360" in capsys.readouterr().err
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["data"]["labels_per_class"] == 3
    with pytest.raises(SystemExit) as exit_:
        main(["train", "plain_cnn_4_8", "--labels-per-class", "0"])
    assert exit_.value.code == 2
    assert "--labels-per-class: '0' is not allowed (an integer >= 1)" in capsys.readouterr().err


def test_search_and_confirm_keep_the_few_labels(tmp_path, capsys):
    space = conftest.write_space(tmp_path, conftest.HAND_SPACE)
    out = tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "1", "--out", str(out),
                 "--labels-per-class", "4", "--warm-start", "none"]) == 0
    info = yaml.safe_load((out / "run.yaml").read_text())
    assert info["data"]["labels_per_class"] == 4 and info["data"]["train_size"] == 40
    assert info["space"]["task"]["labels_per_class"] == 4
    recipe = ["--trial", "0", "--epochs", "1", "--min-steps", "1", "--seeds", "0"]
    assert main(["confirm", str(out), *recipe]) == 0
    first = json.loads((out / "confirm.jsonl").read_text().splitlines()[0])
    assert first["recipe"]["labels_per_class"] == 4  # the search's
    kept = (out / "weights" / first["weights"]).read_bytes()
    # another file, in a folder not made yet, beside a second in the run folder: each keeps
    # its own weights (they once shared weights/ and the later overwrote the earlier's)
    for other in (tmp_path / "new" / "more.jsonl", out / "more.jsonl"):
        assert main(["confirm", str(out), *recipe, "--labels-per-class", "8", "--out",
                     str(other)]) == 0
        again = json.loads(other.read_text().splitlines()[0])
        assert again["recipe"]["labels_per_class"] == 8
        assert (other.parent / "more-weights" / again["weights"]).is_file()
    assert (out / "weights" / first["weights"]).read_bytes() == kept
