"""Bad input and failing output (issue 23): one line on stderr, exit status 2, nothing
written first and nothing lost.

Covers full disks (every output written atomically), limits checked at parse time,
one-line argparse errors, output folders that cannot be written, ``--storage`` URLs that
cannot be opened, ONNX export of IDA pooling, impossible values in trials.jsonl, non-finite
weights, and downloads that never finish.
"""

from __future__ import annotations

import errno
import http.server
import io
import math
import os
import threading
import time
import types
from pathlib import Path
from typing import Callable, Iterator

import conftest
import pytest
import torch
import torch.nn.functional as F
from test_bad_input import (
    SPACE,
    TINY,
    error_line,
    files_of,
    make_run,
    no_loading,  # noqa: F401  (a fixture, used by name)
    write,
)

import dla_nas.analysis.confirm
import dla_nas.files
import dla_nas.search.core
from dla_nas.arch.builder import build_model, window_max_pool
from dla_nas.arch.genome import Genome
from dla_nas.cli import main
from dla_nas.download import fetch
from dla_nas.errors import OptionError, WeightsError
from dla_nas.results import RunStore
from dla_nas.train.checkpoint import save_checkpoint
from dla_nas.train.config import TrainConfig

DIGITS = ["--epochs", "1", "--min-steps", "0", "--device", "cpu", "--resolution", "8"]


def train_folder(folder: Path, genome: dict, resolution: int) -> Path:
    """A `dla-nas train` folder holding an untrained network's checkpoint (1 channel)."""
    torch.manual_seed(0)
    model = build_model(Genome.from_dict(genome), 10, 1)
    data = types.SimpleNamespace(name="digits", resolution=resolution, in_chans=1,
                                 num_classes=10, mean=(0.3,), std=(0.4,),
                                 class_names=[str(i) for i in range(10)], resize="squash",
                                 labels_per_class=None,
                                 file_ids=lambda split: torch.zeros(0, dtype=torch.int64))
    folder.mkdir(parents=True)
    save_checkpoint(folder / "checkpoint.pt", model, TrainConfig(), data, {})
    return folder


# ---- 1: a full disk loses nothing -----------------------------------------------------------
class _FillingFile:
    """A file whose first write puts a few bytes on disk and then fails as a full disk does."""

    def __init__(self, fh) -> None:
        self.fh = fh

    def write(self, data) -> int:
        self.fh.write(bytes(data)[:64])
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> "_FillingFile":
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


@pytest.fixture
def full_disk(monkeypatch) -> Callable[[], None]:
    """Call it to fill the disk: from then on, every file that dla-nas writes runs out of
    space after its first bytes."""
    def fill() -> None:
        monkeypatch.setattr(dla_nas.files, "open", lambda path, mode="r", *a, **k:
                            _FillingFile(open(path, mode, *a, **k)), raising=False)
    return fill


def test_train_overwrite_on_a_full_disk_keeps_the_old_results(tmp_path, capsys, full_disk):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"the previous good weights")
    (out / "metrics.json").write_text('{"val_acc": 0.9}')
    before = files_of(out)
    genome = write(tmp_path / "tiny.yaml", TINY)
    full_disk()
    assert main(["train", str(genome), "--out", str(out), "--overwrite", "--json",
                 *DIGITS]) == 2
    error_line(capsys, str(out / "checkpoint.pt"), "No space left on device", "unchanged")
    # hidden temporary files included; the training state of its last epoch stays, so that
    # the same command, once there is room, writes the results without training again
    assert files_of(out).keys() - {"train-state.pt"} == before.keys()
    assert {k: v for k, v in files_of(out).items() if k in before} == before


def test_export_weights_on_a_full_disk_leaves_no_file(tmp_path, capsys, full_disk):
    folder = train_folder(tmp_path / "trained", TINY, 8)
    out = tmp_path / "export"
    full_disk()
    assert main(["export", str(folder), "--weights", "--out", str(out)]) == 2
    error_line(capsys, str(out), "No space left on device")
    assert not out.exists()


def test_pareto_on_a_full_disk_keeps_the_old_plots(tmp_path, capsys, full_disk):
    run = make_run(tmp_path / "run")
    (run / "pareto.png").write_bytes(b"old plot")
    before = files_of(run)
    full_disk()
    assert main(["pareto", str(run)]) == 2
    error_line(capsys, str(run / "pareto.html"), "No space left on device")
    assert files_of(run) == before  # hidden temporary files included


def test_a_plot_that_runs_out_of_space_keeps_the_old_plots(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def filling(fig, path, *args, **kwargs):  # matplotlib writes its files itself
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = make_run(tmp_path / "run")
    (run / "pareto.png").write_bytes(b"old plot")
    before = files_of(run)
    monkeypatch.setattr(Figure, "savefig", filling)
    assert main(["pareto", str(run)]) == 2
    error_line(capsys, str(run), "No space left on device")
    assert files_of(run) == before


def test_a_failed_append_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    def full(path, data):  # appends (trials.jsonl, confirm.jsonl) are not atomic writes
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(dla_nas.analysis.confirm, "append_line", full)
    run = tmp_path / "run"
    RunStore(run).create_or_check({"backend": "optuna", "space_fingerprint": "test",
                                   "space": SPACE, "data": conftest.digits_data(),
                                   "objectives": [["val_acc", "maximize"]]})
    (run / "trials.jsonl").write_text("")
    assert main(["confirm", str(run), "--baselines", "plain_cnn_8_16_32", "--seeds", "0",
                 "--epochs", "1", "--min-steps", "0", "--device", "cpu"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the plan of what to train
    assert last.startswith("dla-nas confirm: error: ") and "Traceback" not in last
    assert f"{run / 'confirm.jsonl'}: cannot be written (No space left on device)" in last


# ---- 2: limits at parse time ----------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["eval", "c.pt", "--resolution", "100000"],
     "--resolution: '100000' is not allowed (an integer from 1 to 2048)"),
    (["train", "dla34", "--resolution", "4096"], "--resolution: '4096' is not allowed"),
    (["search", "--space", "s.yaml", "--resolution", "2049"], "--resolution: '2049'"),
    (["train", "dla34", "--seed", str(2**32)],
     f"--seed: '{2**32}' is not allowed (an integer from 0 to {2**32 - 1})"),
    (["train", "dla34", "--split-seed", str(2**40)], "--split-seed:"),
    (["search", "--space", "s.yaml", "--seed", str(2**32)], "--seed:"),
    (["confirm", "run", "--seeds", f"0,{2**32}"], f"--seeds: '0,{2**32}' is not allowed"),
    (["confirm", "run", "--seeds", "0,,1"], "--seeds: '0,,1' is not allowed (an empty item"),
    (["confirm", "run", "--trial", "3,"], "--trial: '3,' is not allowed (an empty item"),
    (["search", "--space", "s.yaml", "--baselines", "a,,b"], "--baselines: 'a,,b' is not"),
    (["search", "--space", "s.yaml", "--gpus", "0,,1"], "--gpus: '0,,1' is not allowed"),
    (["search", "--space", "s.yaml", "--gpus", ""], "--gpus: '' is not allowed (GPU indices"),
])
def test_sizes_and_seeds_out_of_range_are_refused_at_parse_time(argv, message, tmp_path,
                                                                 capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error_line(capsys, f"dla-nas {argv[0]}: error: {message}")
    assert not list(tmp_path.iterdir())


@pytest.mark.usefixtures("no_loading")
def test_more_workers_than_cores_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dla_nas.search.core, "cpu_cores", lambda: 2)
    space = write(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "run"
    assert main(["search", "--space", str(space), "--workers", "3", "--out", str(out)]) == 2
    error_line(capsys, "--workers: 3 is not allowed (at most 2")
    assert not out.exists()


def test_gpu_workers_are_not_capped_at_the_cores(monkeypatch):
    """Workers on GPUs (a 2-core job with 4 GPUs, say) are spread over the GPUs."""
    from dla_nas.search.core import SearchOptions, check_workers

    monkeypatch.setattr(dla_nas.search.core, "cpu_cores", lambda: 2)
    check_workers(SearchOptions(space="s.yaml", trials=4, out="o", workers=4), "cuda")
    with pytest.raises(OptionError, match="--workers: 4 is not allowed"):
        check_workers(SearchOptions(space="s.yaml", trials=4, out="o", workers=4), "cpu")


# ---- 3: argparse errors are one line --------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["search", "--space", "s.yaml", "--trials", "0"],
     "dla-nas search: error: --trials: '0' is not allowed (an integer >= 1)"),
    (["search", "--space", "s.yaml", "--workers", "0"], "dla-nas search: error: --workers: '0'"),
    (["confirm", "run", "--seeds", "abc"], "dla-nas confirm: error: --seeds: 'abc'"),
    (["confirm", "run", "--top", "0"], "dla-nas confirm: error: --top: '0'"),
    (["train", "dla34", "--epochs", "0"], "dla-nas train: error: --epochs: '0'"),
    (["export", "run", "--trial", "x"], "dla-nas export: error: --trial: invalid"),
    (["search"], "dla-nas search: error: the following arguments are required: --space"),
    (["nonsense"], "dla-nas: error: COMMAND: invalid choice: 'nonsense'"),
])
def test_a_flag_error_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert error_line(capsys).startswith(message)


def test_a_value_the_recipe_refuses_is_named_by_its_flag(capsys):
    """--lr passes the parser and is refused by TrainConfig's rules: named as typed."""
    assert main(["train", "dla34", "--lr", "0"]) == 2
    assert error_line(capsys) == "dla-nas train: error: --lr: 0.0 is not allowed (> 0)"


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: dla-nas search")


# ---- 4: output folders that cannot be written -----------------------------------------------
def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.fixture
def unwritable(tmp_path) -> Iterator[Path]:
    """A folder in which no file can be created: a read-only one, or /sys when the tests run
    as root (root writes through permissions)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    candidates = [folder, Path("/sys")]
    found = next((f for f in candidates if f.is_dir() and not _writable(f)), None)
    if found is None:
        pytest.skip("no folder here refuses writes")
    yield found
    folder.chmod(0o700)


@pytest.mark.parametrize("command", ["train", "search", "pareto", "export", "confirm"])
@pytest.mark.usefixtures("no_loading")
def test_an_out_that_cannot_be_written_is_refused_before_any_work(command, unwritable,
                                                                   tmp_path, capsys):
    run = make_run(tmp_path / "run")
    before = files_of(run)
    space = write(tmp_path / "space.yaml", SPACE)
    out = unwritable / "dla-nas-out"
    argv = {"train": ["train", "dla34_cifar", "--out", str(out)],
            "search": ["search", "--space", str(space), "--out", str(out)],
            "pareto": ["pareto", str(run), "--out", str(out)],
            "export": ["export", str(run), "--knee", "--out", str(out)],
            "confirm": ["confirm", str(run), "--top", "1", "--out", str(out / "c.jsonl")],
            }[command]
    assert main(argv) == 2
    error_line(capsys, "--out", str(out), f"cannot write in {unwritable}")
    assert files_of(run) == before and not out.exists()


# ---- 5: --storage that cannot be opened -----------------------------------------------------
@pytest.mark.parametrize("url, message", [
    ("postgresql://user:secret@127.0.0.1:1/db", "--storage postgresql://user:***@127.0.0.1:1"),
    ("mysql+pymysql://user@127.0.0.1:1/db", "--storage mysql+pymysql://user@127.0.0.1:1/db: "),
    ("sqlite:///{tmp}/notes.db", "is not an SQLite database"),
    ("sqlite:///{ro}/study.db", "cannot write in"),
])
@pytest.mark.usefixtures("no_loading")
def test_a_storage_that_cannot_be_opened_is_one_line_before_anything_is_written(
        url, message, tmp_path, unwritable, capsys):
    (tmp_path / "notes.db").write_text("not a database\n")
    space = write(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "run"
    url = url.format(tmp=tmp_path, ro=unwritable)
    assert main(["search", "--space", str(space), "--storage", url, "--out", str(out)]) == 2
    line = error_line(capsys, message)
    assert "secret" not in line
    assert not out.exists()
    assert (tmp_path / "notes.db").read_text() == "not a database\n"


# ---- 6: ONNX export of IDA pooling ----------------------------------------------------------
IDA = {"stem": {"kernel": 3, "levels": [{"channels": 4}]},
       "stages": [{"channels": 4, "stride": 2}, {"channels": 4, "stride": 2},
                  {"channels": 8, "stride": 2, "ida_from": [0]}]}


@pytest.mark.parametrize("n, m", [(13, 2), (13, 7), (7, 3), (9, 9), (16, 4)])
def test_the_written_out_pooling_is_adaptive_max_pooling(n, m):
    x = torch.randn(2, 3, n, n + 2)
    assert torch.equal(window_max_pool(x, (m, m + 1)), F.adaptive_max_pool2d(x, (m, m + 1)))


def test_an_ida_genome_at_13_px_exports_to_onnx_and_computes_the_same(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    folder = train_folder(tmp_path / "trained", IDA, 13)
    out = tmp_path / "export"
    assert main(["export", str(folder), "--onnx", "--weights", "--out", str(out)]) == 0
    (graph,) = out.glob("*.onnx")
    onnx.checker.check_model(onnx.load(str(graph)))
    model = build_model(Genome.from_dict(IDA), 10, 1).eval()
    model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=True)["state_dict"])
    x = torch.randn(2, 1, 13, 13)
    (got,) = ReferenceEvaluator(str(graph)).run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x).detach(), atol=1e-4, rtol=1e-4)


def test_a_failed_onnx_export_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")

    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator x\n" + "graph line\n" * 195)

    monkeypatch.setattr(torch.onnx, "export", broken)
    folder = train_folder(tmp_path / "trained", IDA, 13)
    out = tmp_path / "export"
    assert main(["export", str(folder), "--onnx", "--out", str(out)]) == 2
    error_line(capsys, "cannot be exported to ONNX", "Unsupported: ONNX export of operator x")
    assert not out.exists()


# ---- 7: impossible values in trials.jsonl ---------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ('"macs": NaN', "macs: nan is not allowed"),
    ('"macs": -5', "macs: -5 is not allowed (>= 0)"),
    ('"params": Infinity', "params: inf is not allowed"),
    ('"latency_ms": -1.0', "latency_ms: -1.0 is not allowed"),
    ('"val_acc": 1.5', "val_acc: 1.5 is not allowed (0 <= x <= 1)"),
])
@pytest.mark.parametrize("command", ["status", "pareto"])
def test_a_trial_with_an_impossible_value_is_refused_naming_its_line(command, change, message,
                                                                     tmp_path, capsys):
    run = make_run(tmp_path / "run")
    good = (run / "trials.jsonl").read_text().splitlines()[0]
    line = good.replace('"trial":0', '"trial":2').rstrip("}") + ", " + change + "}"
    with open(run / "trials.jsonl", "a") as fh:
        fh.write(line + "\n")
    before = files_of(run)
    assert main([command, str(run)]) == 2
    error_line(capsys, f"{run / 'trials.jsonl'}:3: {message}")
    assert files_of(run) == before


def test_status_on_a_trials_jsonl_that_is_a_folder_is_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    (run / "trials.jsonl").unlink()
    (run / "trials.jsonl").mkdir()
    assert main(["status", str(run)]) == 2
    error_line(capsys, str(run / "trials.jsonl"), "cannot be read (Is a directory)")


# ---- 8: non-finite weights ------------------------------------------------------------------
def test_pretrained_weights_with_nan_are_refused(tmp_path, capsys):
    model = build_model(Genome.from_dict(TINY), 10, 1)
    state = model.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], math.nan)
    weights = tmp_path / "nan.pt"
    torch.save(state, weights)
    genome = write(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "run"
    assert main(["train", str(genome), "--pretrained", str(weights), "--out", str(out),
                 "--json", *DIGITS]) == 2
    error_line(capsys, str(weights), f"tensor {first} holds NaN or infinite values")
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_checkpoint_with_nan_weights_is_refused(command, tmp_path, capsys):
    folder = train_folder(tmp_path / "trained", TINY, 8)
    path = folder / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name][...] = math.inf
    torch.save(ckpt, path)
    out = tmp_path / "export"
    argv = ["eval", str(path)] if command == "eval" else ["export", str(folder), "--out",
                                                           str(out)]
    assert main(argv) == 2
    error_line(capsys, str(path), f"state_dict.{name}: holds NaN or infinite values")
    assert not out.exists()


# ---- 9: downloads that never finish ---------------------------------------------------------
class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1 MB and sends one byte every 0.1 s."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def trickling_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/weights.pth"
    server.shutdown()
    server.server_close()


def test_a_trickling_download_stops_at_its_deadline_and_leaves_nothing(trickling_url,
                                                                        tmp_path):
    dest = tmp_path / "cache" / "weights.pth"
    start = time.monotonic()
    with pytest.raises(WeightsError) as error:
        fetch(trickling_url, dest, WeightsError, deadline=1.0)
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert trickling_url in message and "not complete after 1 s" in message
    assert len(message.splitlines()) == 1
    assert list(dest.parent.iterdir()) == []


def test_write_file_takes_a_buffer_and_leaves_only_the_file(tmp_path):
    # the checkpoint writer hands it a memoryview of torch.save's buffer
    buffer = io.BytesIO(b"checkpoint bytes")
    dla_nas.files.write_file(tmp_path / "f", buffer.getbuffer())
    assert files_of(tmp_path) == {"f": b"checkpoint bytes"}


def test_a_written_file_has_the_mode_open_would_give_it(tmp_path):
    """Atomic writes go through mkstemp, which makes files private (0600): an exported model
    must be readable by the service that deploys it, as umask allows."""
    old = os.umask(0o022)
    try:
        dla_nas.files.write_file(tmp_path / "model.yaml", "a: 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "model.yaml").stat().st_mode & 0o777 == 0o644
