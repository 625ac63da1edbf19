"""Trainer: learning, divergence, determinism, early stop, checkpoints, and the CLI."""

import json

import pytest
import torch

from dla_nas import Genome, build_model
from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset
from dla_nas.errors import CheckpointError, TrainError
from dla_nas.train.checkpoint import load_checkpoint
from dla_nas.train.config import TrainConfig
from dla_nas.train.trainer import lr_factor, param_groups, recalibrate_bn, train

TINY = {
    "name": "tiny",
    "stem": {"kernel": 3, "levels": [{"channels": 8}]},
    "stages": [{"channels": 16, "stride": 1, "level_root": False}, {"channels": 32}],
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig("digits"))


def tiny_model(data, **kw):
    return build_model(Genome.from_dict(TINY), data.num_classes, data.in_chans, **kw)


def test_learning_happens_on_digits(digits):
    # seeded: the init must not depend on what earlier tests drew (5 epochs: 0.70-0.82 over
    # init seeds 0-7, 3 epochs only 0.57-0.69)
    torch.manual_seed(0)
    result = train(tiny_model(digits, zero_init_residual=True), digits,
                   TrainConfig(min_steps=0, epochs=5, device="cpu"))
    assert result.val_acc >= 0.6  # chance is 0.1
    assert len(result.val_acc_per_epoch) == 5 and result.epochs_run == 5
    assert not result.diverged
    assert result.images_per_second > 0 and result.train_seconds > 0 and result.peak_memory_mb > 0


def test_huge_learning_rate_diverges_without_raising(digits):
    result = train(tiny_model(digits), digits, TrainConfig(min_steps=0, epochs=3, lr=1e12, device="cpu"))
    assert result.diverged
    assert "non-finite" in result.divergence
    assert result.epochs_run == 1  # ended early


def test_same_seed_same_result_on_cpu(digits):
    cfg = TrainConfig(min_steps=0, epochs=2, seed=3, device="cpu")
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # model init seed
        model = tiny_model(digits)
        runs.append((train(model, digits, cfg), model.state_dict()))
    (a, sa), (b, sb) = runs
    assert a.val_acc_per_epoch == b.val_acc_per_epoch
    assert a.train_loss_per_epoch == b.train_loss_per_epoch
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_channels_last_order_trains_as_nchw_does_up_to_rounding(digits):
    """The default memory order (channels_last, faster on the CPU too) changes a run only by
    float rounding: it learns, with losses within 5% of NCHW's epoch by epoch, and the
    network is left in the order it trained in."""
    runs = {}
    for order in (True, False):
        torch.manual_seed(0)
        model = tiny_model(digits, zero_init_residual=True)
        runs[order] = train(model, digits, TrainConfig(min_steps=0, epochs=4, device="cpu",
                                                       channels_last=order))
        conv = next(m.weight for m in model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) == order
        assert conv.is_contiguous() != order
    assert TrainConfig().channels_last
    fast, nchw = runs[True], runs[False]
    assert fast.val_acc >= 0.6 and nchw.val_acc >= 0.6  # chance is 0.1
    assert fast.train_loss_per_epoch == pytest.approx(nchw.train_loss_per_epoch, rel=0.05)
    assert fast.train_loss_per_epoch != nchw.train_loss_per_epoch  # two orders ran


def test_different_seed_changes_the_run(digits):
    torch.manual_seed(0)
    a = train(tiny_model(digits), digits, TrainConfig(min_steps=0, epochs=1, seed=1, device="cpu"))
    torch.manual_seed(0)
    b = train(tiny_model(digits), digits, TrainConfig(min_steps=0, epochs=1, seed=2, device="cpu"))
    assert a.train_loss_per_epoch != b.train_loss_per_epoch


def test_callback_sees_each_epoch_and_can_stop(digits):
    seen = []

    def stop_after_two(report):
        seen.append(report.epoch)
        return report.epoch == 2

    result = train(tiny_model(digits), digits, TrainConfig(min_steps=0, epochs=5, device="cpu"), stop_after_two)
    assert seen == [1, 2]
    assert result.stopped_early and result.epochs_run == 2


def test_weight_decay_excludes_bn_and_bias():
    model = build_model(Genome.from_dict(TINY), 10, 1)
    groups = param_groups(model, 5e-4, 0.1)
    decay = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    no_decay = [p for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert all(p.ndim > 1 for p in decay) and decay
    bn_and_bias = {id(p) for n, p in model.named_parameters() if "bn" in n or n.endswith("bias")
                   or ".1." in n}
    assert bn_and_bias <= {id(p) for p in no_decay}
    assert all(g["lr"] == 0.1 for g in groups)  # no backbone multiplier by default


def test_onecycle_warms_up_then_decays_to_zero():
    total, warmup = 100, 10
    factors = [lr_factor(s, total, warmup, "onecycle") for s in range(total + 1)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[50] < factors[20] < 1.0 and factors[total] == pytest.approx(0.0)
    assert lr_factor(0, total, warmup, "cosine") == pytest.approx(1.0)


def test_bn_recalibration_matches_batch_statistics():
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(bn)
    x = torch.randn(64, 3, 4, 4) * 5 + 2
    recalibrate_bn(model, [x[:32], x[32:]])
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and model.training


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 0}, "epochs: 0 is not allowed"),
    ({"schedule": "step"}, "schedule: 'step' is not allowed"),
    ({"device": "tpu"}, "device: 'tpu' is not allowed"),
    ({"lr": -1.0}, "lr: -1.0 is not allowed"),
])
def test_bad_train_settings(kw, message):
    with pytest.raises(TrainError, match=message):
        TrainConfig(**kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda():
    with pytest.raises(TrainError, match="not available here"):
        TrainConfig(device="cuda")


def test_cli_train_then_eval(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    Genome.from_dict(TINY).to_yaml(path)
    out = tmp_path / "run"
    assert main(["train", str(path), "--epochs", "2", "--min-steps", "0", "--out", str(out),
                 "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("val_acc", "test_acc", "train_seconds", "images_per_second", "params", "macs"):
        assert key in metrics
    assert json.loads((out / "metrics.json").read_text())["test_acc"] == metrics["test_acc"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["genome"]["name"] == "tiny" and ckpt["train_config"]["epochs"] == 2
    assert main(["eval", str(out / "checkpoint.pt"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["acc"] == pytest.approx(metrics["test_acc"])


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch SHOULD_NOT_EXIST",))


def test_checkpoint_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "dla-nas-checkpoint/1", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="not a loadable dla-nas checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "SHOULD_NOT_EXIST").exists()
    torch.save({"a": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a dla-nas checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_eval_refuses_a_dataset_with_other_classes(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    Genome.from_dict(TINY).to_yaml(path)
    assert main(["train", str(path), "--epochs", "1", "--min-steps", "0", "--out", str(tmp_path / "r"), "--json"]) == 0
    capsys.readouterr()
    folder = tmp_path / "imgs"
    from PIL import Image
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), color=i * 40).save(folder / cls / f"{i}.png")
    assert main(["eval", str(tmp_path / "r" / "checkpoint.pt"), "--dataset", f"folder:{folder}"]) == 2
    assert "evaluate it on data with its 10 classes" in capsys.readouterr().err


@pytest.mark.parametrize("source, sampling", [("digits", "uniform"),
                                              ("streamed", "uniform"), ("streamed", "balanced")])
def test_a_training_resumes_from_its_saved_state_to_the_same_losses(tmp_path, source,
                                                                     sampling):
    """A training stopped after an epoch and resumed from ``report.state()`` (saved as
    ``save_train_state`` saves it: plain data for ``weights_only``) repeats the run it
    resumes. A folder over the in-memory budget is decoded by DataLoader workers: its order
    and augmentation draws are in the state too (the loader once drew its workers' seeds from
    the order's generator, once per new iterator, so a resumed run shuffled otherwise)."""
    from conftest import write_folder

    from dla_nas.train.checkpoint import load_train_state, save_train_state

    if source == "digits":
        data = load_dataset(DataConfig("digits", resolution=8))
    else:
        root = write_folder(tmp_path / "data", {"a": 40, "b": 24})
        data = load_dataset(DataConfig(f"folder:{root}", resolution=16, max_in_memory_bytes=0))
        assert data.streaming and data.augment.pad  # shifts drawn by the augmentation's RNG
    genome = Genome.from_dict({"stem": {"kernel": 3, "levels": [{"channels": 4}]},
                               "stages": [{"channels": 8, "stride": 1, "level_root": False}]})
    cfg = TrainConfig(min_steps=0, epochs=3, batch_size=16, device="cpu", threads=1,
                      sampling=sampling)

    def model():
        torch.manual_seed(0)
        return build_model(genome, data.num_classes, data.in_chans)

    whole = train(model(), data, cfg)

    def stop_after_two(report):
        if report.epoch == 2:
            save_train_state(tmp_path / "state.pt", "k", report.state())
            return True

    train(model(), data, cfg, stop_after_two)
    saved = load_train_state(tmp_path / "state.pt", "k")
    assert saved["train"]["epoch"] == 2 and load_train_state(tmp_path / "state.pt", "j") is None
    resumed = train(model(), data, cfg, resume=saved["train"])
    assert resumed.epochs_run == 3
    assert resumed.train_loss_per_epoch == whole.train_loss_per_epoch
    assert resumed.val_acc_per_epoch == whole.val_acc_per_epoch
