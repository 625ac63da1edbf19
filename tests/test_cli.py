"""The command line: show, --json, --help and clear errors."""

import contextlib
import io
import json
import subprocess
import sys

import pytest

from dla_nas.cli import main
from dla_nas.files import folder_lock


def test_show_json_dla34(capsys):
    assert main(["show", "dla34", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 15_742_104
    assert out["macs"] == 3_060_043_776
    assert len(out["hash"]) == 12
    assert [s["name"] for s in out["stages"]] == [f"level{i}" for i in range(6)] + ["head"]


def test_show_table_for_a_yaml_at_cifar_size(capsys, tmp_path):
    from dla_nas.arch import zoo

    path = tmp_path / "g.yaml"
    zoo.load("dla46_c_cifar").to_yaml(path)
    assert main(["show", str(path), "--input", "1x32x32", "--classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "level5" in out and "total" in out and "in 1x32x32" in out


@pytest.mark.parametrize("argv, message", [
    (["show", "dla34", "--input", "16"], "too small"),
    (["show", "nonsense"], "neither a zoo name"),
])
def test_user_errors_are_one_line_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["show", "dla34", "--classes", "0"], ["show", "dla34", "--input", "3x"]])
def test_bad_flags_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "is not allowed" in capsys.readouterr().err


def test_console_script_help_explains_every_command():
    from dla_nas.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # argparse keeps them here
    top = subprocess.run([sys.executable, "-m", "dla_nas.cli", "--help"], capture_output=True, text=True)
    assert top.returncode == 0
    for command in commands:  # each command's help in this process (one start is enough)
        assert command in top.stdout
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            build_parser().parse_args([command, "--help"])
        assert done.value.code == 0 and "usage: dla-nas " + command in out.getvalue()


def test_sampling_help_gives_a_sampling_default_and_augment_help_an_augmentation_one():
    """The two options share a helper; each names its own default (--sampling's once read
    'default ... digits and folders shift, CIFAR objects')."""
    from dla_nas.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    seen = 0
    for parser in commands.values():
        for action in parser._actions:
            default = (action.help or "").rsplit("default", 1)[-1]
            if action.dest == "sampling":
                seen += 1
                assert "auto" in default and "shift" not in default, action.help
            elif action.dest == "augment":
                assert "sampling" not in default, action.help
    assert seen >= 4  # train, confirm, search, data

def test_help_and_a_bad_flag_answer_without_loading_torch():
    """Every command's ``--help`` and a refused flag need neither torch, Optuna nor Ray (torch
    alone took 1.5-2 s here): the parser's defaults come from torch-free modules."""
    probe = ("import contextlib, io, sys\n"
             "from dla_nas.cli import build_parser, main\n"
             "quiet = contextlib.redirect_stdout(io.StringIO())\n"
             "for command in build_parser()._subparsers._group_actions[0].choices:\n"
             "    with contextlib.suppress(SystemExit), quiet:\n"
             "        main([command, '--help'])\n"
             "try:\n"
             "    main(['train', 'dla34', '--epochs', '0'])\n"
             "except SystemExit as done:\n"
             "    print(done.code, [m for m in ('torch', 'optuna', 'ray') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout == "2 []\n", out.stdout + out.stderr
    assert "--epochs: '0' is not allowed" in out.stderr


def test_progress_written_to_a_log_is_a_line_per_epoch_at_most_every_30_s(monkeypatch):
    """Where stderr is a file (nohup, CI), train's and confirm's bars become plain lines: the
    first and last epoch of each run or unit always (a unit that starts later than epoch 1
    too), the others once 30 s have passed since the last line, so a 40-minute unit shows it is
    alive without a line per second; a long line is not wrapped."""
    from types import SimpleNamespace

    from rich.console import Console

    from dla_nas.cli import render

    clock = iter([0.0, 10.0, 45.0, 50.0] * 2 + [55.0])
    monkeypatch.setattr(render.time, "monotonic", lambda: next(clock))

    def report(epoch):
        return SimpleNamespace(epoch=epoch, epochs=4, train_loss=0.5, val_acc=0.25, val=None,
                               images_per_second=100.0)

    out = io.StringIO()
    log = Console(file=out)  # 80 columns: a log's line must not wrap all the same
    assert not log.is_terminal
    with render.epoch_progress(log, 4, quiet=False) as on_epoch:
        for epoch in range(1, 5):
            on_epoch(report(epoch))
    unit = "trial 12 (unet_16_32_64_128_256 [wide])"
    with render.unit_progress(log) as on_epoch:
        for epoch in range(1, 5):
            on_epoch(SimpleNamespace(label=unit, unit=("baseline", unit)), 1, report(epoch))
        on_epoch(SimpleNamespace(label="unet_8", unit=("baseline", "unet_8")), 0, report(2))
    assert out.getvalue().splitlines() == [
        f"{who}epoch {e}/4  loss 0.500  val acc 0.250  100 img/s"
        for who, epochs in (("", (1, 3, 4)), (f"{unit} seed 1: ", (1, 3, 4)),
                            ("unet_8 seed 0: ", (2,)))
        for e in epochs]
    quiet = io.StringIO()
    with render.epoch_progress(Console(file=quiet), 4, quiet=True) as on_epoch:
        on_epoch(report(1))
    assert quiet.getvalue() == ""


def test_a_warning_is_one_line_and_data_counts_the_unreadable(tmp_path):
    """A user reads a warning's message, not the Python source line that raised it; `data`
    says how many images it left out."""
    from conftest import write_folder

    root = write_folder(tmp_path / "f", {"a": 4, "b": 4})
    (root / "a" / "9999.png").write_bytes(b"not a png")
    out = subprocess.run([sys.executable, "-m", "dla_nas.cli", "data", f"folder:{root}",
                          "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith(f"warning: skipping unreadable image {root / 'a' / '9999.png'}")
    assert len(out.stderr.splitlines()) == 1 and "UserWarning" not in out.stderr
    assert json.loads(out.stdout)["unreadable_skipped"] == 1


def test_an_interrupted_train_goes_on_from_its_last_epoch_with_the_same_out(tmp_path, capsys,
                                                                            monkeypatch):
    """``train --out X`` saves its state after each epoch; the same command goes on from it,
    to the same figures as a training never interrupted; other settings are refused."""
    import dla_nas.cli.model_cmds as model_cmds

    def argv(epochs: int = 3) -> list[str]:
        return ["train", "plain_cnn_4_8", "--dataset", "digits", "--resolution", "8",
                "--epochs", str(epochs), "--min-steps", "0"]

    assert main([*argv(), "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    shown = model_cmds.epoch_progress

    @contextlib.contextmanager
    def interrupted_after_two(console, epochs, quiet, done=0):
        def on_epoch(report):
            if report.epoch == 2:  # its state is saved before the display hears of it
                raise KeyboardInterrupt
        yield on_epoch

    out = tmp_path / "run"
    monkeypatch.setattr(model_cmds, "epoch_progress", interrupted_after_two)
    assert main([*argv(), "--out", str(out)]) == 130
    assert f"--out {out} goes on from it" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in out.iterdir()) == ["train-state.pt"]
    monkeypatch.setattr(model_cmds, "epoch_progress", shown)
    for other in (argv(4), [*argv(), "--split-seed", "1"]):  # not this state's settings
        assert main([*other, "--out", str(out)]) == 2
        assert "holds train-state.pt, an unfinished training with other settings" in \
            capsys.readouterr().err
    saved = (out / "train-state.pt").read_bytes()
    with folder_lock(out):  # another process training there: refused, its state untouched
        assert main([*argv(), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"dla-nas train: error: --out {out}: another dla-nas process is writing there; wait "
        "for it to finish, or give another --out")
    assert (out / "train-state.pt").read_bytes() == saved
    assert main([*argv(), "--out", str(out)]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().err
    resumed = json.loads((out / "metrics.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json"]
    for key in ("val_acc_per_epoch", "train_loss_per_epoch", "test_acc", "test_confusion"):
        assert resumed[key] == whole[key], key
    assert resumed["resumed_after"] == 2 and "resumed_after" not in whole

    # --overwrite of those results, interrupted: the same command goes on from its state
    monkeypatch.setattr(model_cmds, "epoch_progress", interrupted_after_two)
    assert main([*argv(), "--out", str(out), "--overwrite"]) == 130
    monkeypatch.setattr(model_cmds, "epoch_progress", shown)
    assert main([*argv(), "--out", str(out), "--overwrite"]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().err
