"""``dla-nas predict``: class predictions for image files from a train folder, an exported
config with weights or an ONNX file, preprocessed as the product's own loaders do."""

import csv
import dataclasses
import io
import json
import shutil
import sys
from pathlib import Path

import conftest
import numpy as np
import pytest
import torch
from PIL import Image

from dla_nas.analysis.predict import Preprocessing, find_images, load_predictor
from dla_nas.cli import main
from dla_nas.data import DataConfig, load_dataset, make_loader
from dla_nas.train.checkpoint import checkpoint_model, load_checkpoint

CLASSES = {"a": 10, "b": 10, "c": 10}
TRAIN = ["--resolution", "16", "--epochs", "1", "--min-steps", "2", "--device", "cpu"]


def train(root: Path, out: Path, *extra: str) -> Path:
    assert main(["train", "plain_cnn_8_16_32", "--dataset", f"folder:{root}", *TRAIN,
                 "--out", str(out), "--json", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A grey folder of 3 classes and a tiny network trained on it."""
    base = tmp_path_factory.mktemp("predict")
    root = conftest.write_folder(base / "data", CLASSES)
    return root, train(root, base / "run")


def run_predict(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def predicted(capsys, model, path, *flags: str) -> dict[str, tuple[str, float]]:
    """path -> (class, confidence), from ``predict --json``."""
    code, out, _ = run_predict(capsys, str(model), str(path), "--json", *flags)
    assert code == 0
    return {row["path"]: (row["class"], row["confidence"])
            for row in map(json.loads, out.splitlines())}


def product_val(root: Path, checkpoint: Path, resize: str = "squash"):
    """The val split as the product loads, normalises (with the checkpoint's mean and std,
    as ``dla-nas eval`` does) and classifies it: its files, the normalised batch and
    path -> (class, softmax probability of that class)."""
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["data"]
    data = load_dataset(DataConfig(f"folder:{root}", resolution=16, resize=resize))
    assert not data.streaming and data.files  # in memory: val rows map to files
    data = dataclasses.replace(data, mean=tuple(meta["mean"]), std=tuple(meta["std"]))
    model = checkpoint_model(ckpt, str(checkpoint)).eval()
    xs, logits = [], []
    with torch.no_grad():
        for x, _ in make_loader(data, "val", 500, "cpu", train=False, seed=0):
            xs.append(x)
            logits.append(model(x))
    x, logits = torch.cat(xs), torch.cat(logits)
    files = [data.files[i] for i in data.val.index.tolist()]
    index = logits.argmax(1).tolist()
    probs = logits.softmax(1)
    classes = {f: (meta["class_names"][i], float(probs[k, i]))
               for k, (f, i) in enumerate(zip(files, index))}
    return files, x, classes


def assert_same(got: dict, expected: dict, tolerance: float = 1e-4) -> None:
    """The same class for every file of ``expected``; confidences (4 decimals) within
    ``tolerance``."""
    for path, (label, confidence) in expected.items():
        assert got[path][0] == label, path
        assert abs(got[path][1] - confidence) <= tolerance + 1e-9, path


def test_a_train_folder_predicts_its_val_split_as_the_product_does(trained, capsys):
    root, run = trained
    files, x, expected = product_val(root, run / "checkpoint.pt")
    got = predicted(capsys, run, root)
    assert len(got) == sum(CLASSES.values())  # every file of the folder, any depth
    assert list(got) == sorted(got)
    assert_same(got, expected, tolerance=5e-5)  # the same numbers, rounded to 4 decimals
    # the same input, bit for bit: decoded by _decode and normalised as the loaders do
    pre = load_predictor(run, "cpu").preprocessing
    assert (pre.in_chans, pre.resolution, pre.resize) == (1, 16, "squash")
    mine = pre.normalise(torch.from_numpy(np.stack([pre.decode(f) for f in files])))
    assert torch.equal(mine, x)
    # the checkpoint file itself is the same model
    assert predicted(capsys, run / "checkpoint.pt", root) == got


def test_onnx_and_exported_config_predict_as_the_checkpoint(trained, tmp_path, capsys):
    pytest.importorskip("onnx", reason="exporting --onnx needs the onnx package")
    pytest.importorskip("onnxruntime", reason="predicting with an .onnx needs onnxruntime")
    root, run = trained
    assert main(["export", str(run), "--onnx", "--weights", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    (config,), (graph,) = tmp_path.glob("*.yaml"), tmp_path.glob("*.onnx")
    assert config.with_suffix(".safetensors").is_file()
    expected = predicted(capsys, run, root)
    for model in (graph, config):
        got = predicted(capsys, model, root)
        assert list(got) == list(expected)
        assert_same(got, expected)
    onnx_model = load_predictor(graph)
    assert onnx_model.kind == "onnx" and onnx_model.class_names == ("a", "b", "c")
    assert onnx_model.preprocessing == load_predictor(run, "cpu").preprocessing
    # without --weights the graph holds initial weights: export says so, predict refuses it
    bare = tmp_path / "bare"
    assert main(["export", str(run), "--onnx", "--out", str(bare)]) == 0
    assert "initial weights, not trained ones" in capsys.readouterr().err
    (untrained,) = bare.glob("*.onnx")
    assert main(["predict", str(untrained), str(root)]) == 2
    assert "exported without trained weights" in capsys.readouterr().err


def test_onnx_without_onnxruntime_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"not a graph")
    images = conftest.write_folder(tmp_path / "data", {"a": 1})
    code, out, err = run_predict(capsys, str(graph), str(images))
    assert code == 2 and out == ""
    assert "pip install onnxruntime" in err and err.count("\n") == 1


def write_odd_rgb_folder(root: Path, counts: dict[str, int], size=(23, 15)) -> Path:
    """Colour images of an odd, non-square size (width, height): class k is a tint and
    stripes of its own period, plus noise."""
    rng = np.random.default_rng(1)
    w, h = size
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        stripes = 100 * np.sin(2 * np.pi * np.arange(w) / (3 + 3 * k))[None, :, None]
        tint = np.array([60 + 80 * k, 120, 200 - 80 * k])[None, None, :]
        for i in range(n):
            img = (tint + stripes + rng.normal(0, 15, (h, w, 3))).clip(0, 255)
            Image.fromarray(img.astype(np.uint8), "RGB").save(root / name / f"{i:03d}.png")
    return root


def test_the_resize_mode_travels_with_the_model(tmp_path, capsys):
    root = write_odd_rgb_folder(tmp_path / "data", {"x": 10, "y": 10})
    run = train(root, tmp_path / "run", "--resize", "pad")
    capsys.readouterr()
    assert load_checkpoint(run / "checkpoint.pt")["data"]["resize"] == "pad"
    pre = load_predictor(run, "cpu").preprocessing
    assert (pre.in_chans, pre.resize) == (3, "pad")
    files, x, expected = product_val(root, run / "checkpoint.pt", resize="pad")
    mine = pre.normalise(torch.from_numpy(np.stack([pre.decode(f) for f in files])))
    assert torch.equal(mine, x)
    squashed = dataclasses.replace(pre, resize="squash")
    assert not np.array_equal(squashed.decode(files[0]), pre.decode(files[0]))  # it matters
    assert_same(predicted(capsys, run, root), expected, tolerance=5e-5)
    # and an exported config keeps it too
    assert main(["export", str(run), "--weights", "--out", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    (config,) = (tmp_path / "exp").glob("*.yaml")
    assert load_predictor(config, "cpu").preprocessing == pre
    assert_same(predicted(capsys, config, root), expected)


def bad_inputs(root: Path, run: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (MODEL and PATH, a part of the message)."""
    assert main(["export", str(run), "--out", str(tmp / "bare")]) == 0  # no --weights
    (bare,) = (tmp / "bare").glob("*.yaml")
    (tmp / "empty").mkdir()
    (tmp / "model.txt").write_text("a model")
    (tmp / "damaged").mkdir()
    (tmp / "damaged" / "checkpoint.pt").write_bytes(b"\x80\x02 not a checkpoint")
    return {
        "missing model": ([str(tmp / "nope"), str(root)], "no such file or folder"),
        "config without weights": ([str(bare), str(root)], "with `dla-nas export ... --weights`"),
        "empty folder": ([str(run), str(tmp / "empty")], "no image files"),
        "missing path": ([str(run), str(tmp / "nowhere")], "PATH"),
        "unknown kind": ([str(tmp / "model.txt"), str(root)], "not a model dla-nas can run"),
        "damaged checkpoint": ([str(tmp / "damaged"), str(root)], "checkpoint.pt"),
        "folder without checkpoint": ([str(tmp / "empty"), str(root)], "without checkpoint.pt"),
    }


def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    root, run = trained
    cases = bad_inputs(root, run, tmp_path)
    capsys.readouterr()
    out = tmp_path / "out" / "predictions.csv"
    for name, (argv, message) in cases.items():
        code, stdout, err = run_predict(capsys, *argv, "--out", str(out))
        assert code == 2, name
        assert err.startswith("dla-nas predict: error: ") and err.count("\n") == 1, (name, err)
        assert message in err and "Traceback" not in err, (name, err)
        assert stdout == "" and not out.exists(), name
    # --out is checked before any work
    code, _, err = run_predict(capsys, str(run), str(root), "--out", str(tmp_path))
    assert code == 2 and "--out" in err and "a folder, not a file" in err


def test_out_csv_has_a_row_per_readable_image(trained, tmp_path, capsys):
    root, run = trained
    data = Path(shutil.copytree(root, tmp_path / "data"))
    (data / "a" / "broken.png").write_bytes(b"not an image")
    (data / "b" / "deeper").mkdir()
    shutil.copy(data / "b" / "0000.png", data / "b" / "deeper" / "copy.PNG")
    (data / ".hidden").mkdir()
    shutil.copy(data / "c" / "0000.png", data / ".hidden" / "x.png")
    (data / "notes.txt").write_text("not an image")
    out = tmp_path / "predictions.csv"
    code, stdout, err = run_predict(capsys, str(run), str(data), "--out", str(out),
                                    "--batch-size", "7")
    assert code == 0 and stdout == ""
    readable = sum(CLASSES.values()) + 1  # the copy in the subfolder; not the hidden one
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["path", "class", "confidence"]
    assert len(rows) == 1 + readable
    assert [r[0] for r in rows[1:]] == sorted(str(p) for p in find_images(data)
                                              if p.name != "broken.png")
    assert all(r[1] in ("a", "b", "c") and len(r[2].split(".")[1]) == 4 for r in rows[1:])
    lines = err.splitlines()
    assert any(line.startswith("warning: skipping unreadable image ") and "broken.png" in line
               for line in lines)
    assert f"{readable} image(s)" in lines[-1] and "skipped 1 unreadable" in lines[-1]
    assert str(out) in lines[-1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no .part
    # one file as PATH; the batches do not change the numbers
    one = data / "b" / "deeper" / "copy.PNG"
    got = predicted(capsys, run, one)
    assert list(got) == [str(one)]
    assert_same(got, {str(one): predicted(capsys, run, data)[str(one)]})


def test_float_and_sparse_16_bit_images_are_warned_about_as_training_does(trained,
                                                                         tmp_path, capsys):
    _, run = trained
    rng = np.random.default_rng(0)
    folder = tmp_path / "camera"
    folder.mkdir()
    Image.fromarray(rng.random((16, 16)).astype(np.float32)).save(folder / "f.tif")
    Image.fromarray((rng.random((16, 16)) * 4096).astype(np.uint16)).save(folder / "d.png")
    Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / "e.png")
    code, _, err = run_predict(capsys, str(run), str(folder))
    assert code == 0
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2, err
    assert "floating point (mode F, values up to 0.9" in warned[0] and "black" in warned[0]
    assert "16-bit images use 12 bits or fewer" in warned[1]
    (folder / "f.tif").unlink()
    (folder / "d.png").unlink()
    code, _, err = run_predict(capsys, str(run), str(folder))
    assert code == 0 and "warning" not in err


def test_preprocessing_from_an_export_is_checked():
    meta = {"channels": "RGB", "size": [16, 16], "resize": "crop", "mean": [0.5] * 3,
            "std": [0.25] * 3}
    assert Preprocessing.from_metadata(meta, "m") == Preprocessing(3, 16, "crop", (0.5,) * 3,
                                                                   (0.25,) * 3)
    from dla_nas.errors import WeightsError

    for key, value, message in [("channels", "CMYK", "grey or RGB"),
                                ("size", [16, 8], "square"),
                                ("resize", "stretch", "squash, pad, crop"),
                                ("mean", None, "export it again"),
                                ("std", [0.25, 0.25, 0], "> 0")]:
        with pytest.raises(WeightsError, match=f"preprocessing.{key}: .*{message}"):
            Preprocessing.from_metadata({**meta, key: value}, "m")
