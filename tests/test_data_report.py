"""The data report: counts per class and split, sizes and formats on disk, duplicates across
splits, the warnings they call for, ``dla-nas data``, and the report that train keeps."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from conftest import write_folder
from PIL import Image

from dla_nas.cli import main
from dla_nas.data import Augment, DataConfig, Dataset, Split, load_dataset
from dla_nas.data.report import data_report, warnings

TINY = {"stem": {"kernel": 3, "levels": [{"channels": 4}]}, "stages": [{"channels": 4}]}


def report_of(root: Path, resolution: int = 16, resize: str = "squash"):
    return data_report(load_dataset(DataConfig(f"folder:{root}", resolution=resolution,
                                               resize=resize)))


def write_images(root: Path, images: dict[str, list[tuple[int, int, str, str]]]) -> Path:
    """``root/<class>/<i>.<ext>``: one noise image per (width, height, mode, format)."""
    rng = np.random.default_rng(0)
    for name, specs in images.items():
        (root / name).mkdir(parents=True)
        for i, (w, h, mode, fmt) in enumerate(specs):
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            im = Image.fromarray(pixels).convert(mode)
            im.save(root / name / f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}", fmt)
    return root


def test_an_imbalanced_folder_is_counted_per_split_and_warned_about(tmp_path):
    report = report_of(write_folder(tmp_path / "tiles", {"Free": 30, "Fray": 3}))
    assert report.class_names == ("Fray", "Free")  # sorted, as the folder is listed
    assert report.totals == (3, 30) and report.imbalance == 10
    assert [sum(c) for c in report.counts] == [19, 7, 7]  # 20% val, 20% test, ceil
    assert all(c[0] == 1 for c in report.counts)  # Fray: one image in each split
    lines = warnings(report)
    assert len(lines) == 1
    assert "imbalanced (Free 30, Fray 3: 10x)" in lines[0]
    assert "answers Free" in lines[0] and "ranks by balanced accuracy" in lines[0]
    assert "batches are class-balanced (--sampling auto" in lines[0]
    # where training draws uniform batches, the line says so and what would balance them
    uniform = warnings(report, balanced=False)[0]
    assert "not class-balanced (--sampling balanced" in uniform and "ranks by" not in uniform


def test_a_balanced_square_folder_gets_no_warning(tmp_path):
    report = report_of(write_folder(tmp_path / "even", {"a": 5, "b": 5}, size=16))
    assert warnings(report) == []
    assert report.sizes.width == (16, 16, 16) and report.sizes.aspect == (1, 1)
    assert report.modes == ("L",) and report.formats == ("PNG",)
    assert report.leaks == 0
    d = report.to_dict()
    assert yaml.safe_load(yaml.safe_dump(d)) == json.loads(json.dumps(d))  # plain data
    assert d["counts"]["total"] == {"a": 5, "b": 5} and d["imbalance_ratio"] == 1


def test_odd_sizes_and_mixed_formats_are_read_from_the_files(tmp_path):
    specs = [(60, 20, "L", "PNG"), (20, 40, "RGB", "JPEG"), (30, 30, "RGB", "PNG"),
             (20, 20, "L", "JPEG")]
    report = report_of(write_images(tmp_path / "odd", {"a": specs, "b": specs}))
    assert report.sizes.width == (20, 25, 60) and report.sizes.height == (20, 25, 40)
    assert report.sizes.aspect == (0.5, 3.0)
    assert report.modes == ("L", "RGB") and report.formats == ("JPEG", "PNG")
    assert report.channels == 3
    squashed = [w for w in warnings(report) if "squashed" in w]
    assert len(squashed) == 1 and "16x16" in squashed[0] and "0.5 to 3" in squashed[0]
    assert "--resize pad keeps their shape" in squashed[0]
    padded = report_of(tmp_path / "odd", resize="pad")
    assert padded.resize == "pad" and padded.to_dict()["resize"] == "pad"
    assert [w for w in warnings(padded) if "aspect" in w] == [
        "images are made square by pad: their aspect ratios (w/h) run from 0.5 to 3"]


def deep_folder(root: Path, scale: float, dtype, ext: str) -> Path:
    """Two classes of 10 grey noise images each, values in [0, scale), stored as ``dtype``."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray((rng.random((16, 16)) * scale).astype(dtype)).save(
                root / name / f"{i}.{ext}")
    return root


def test_float_and_few_bit_16_bit_images_are_warned_about(tmp_path):
    floats = report_of(deep_folder(tmp_path / "f", 1.0, np.float32, "tif"))
    assert floats.modes == ("F",) and 0.9 < floats.float_peak <= 1
    [line] = warnings(floats)
    assert "floating point (mode F, values up to 0.9" in line and "read as black" in line
    assert floats.to_dict()["float_peak"] == floats.float_peak

    twelve = report_of(deep_folder(tmp_path / "12", 4096, np.uint16, "png"))
    assert twelve.sixteen_bit_peak < 4096 and twelve.float_peak is None
    [line] = warnings(twelve)
    assert "16-bit images use 12 bits or fewer" in line and "keep 16 grey levels" in line
    assert "(x16)" in line

    full = report_of(deep_folder(tmp_path / "16", 65535, np.uint16, "png"))
    assert full.sixteen_bit_peak > 60000 and not warnings(full)
    plain = report_of(write_folder(tmp_path / "8", {"a": 10, "b": 10}))
    assert plain.sixteen_bit_peak is None and "sixteen_bit_peak" not in plain.to_dict()


def test_small_images_at_a_large_resolution_are_said_to_be_upscaled(tmp_path):
    root = write_folder(tmp_path / "small", {"a": 4, "b": 4}, size=8)
    assert any("upscaled" in w and "median side is 8 px" in w
               for w in warnings(report_of(root, resolution=32)))
    assert warnings(report_of(root, resolution=8)) == []


def test_identical_files_in_train_and_val_test_are_found(tmp_path):
    root = write_folder(tmp_path / "dup", {"a": 6, "b": 6})
    first = root / "a" / "0000.png"
    for copy in sorted((root / "a").iterdir())[1:]:  # every image of a: the same bytes
        shutil.copyfile(first, copy)
    report = report_of(root)
    in_val_test = report.counts[1][0] + report.counts[2][0]
    assert report.leaks == in_val_test >= 2
    assert len(report.leak_examples) == min(in_val_test, 3)
    assert all(str(root / "a") in e and " = " in e for e in report.leak_examples)
    assert any(f"{in_val_test} images in val/test also appear in train" in w
               for w in warnings(report))


def test_identical_arrays_of_embedded_data_are_found():
    images = torch.arange(4 * 16, dtype=torch.uint8).reshape(4, 1, 4, 4)
    labels = torch.tensor([0, 1, 0, 1])
    train = Split(images, labels)
    val = Split(images[:1].clone(), labels[:1])  # the first train image again
    test = Split(images[1:2] + 100, labels[1:2])  # new content
    data = Dataset("toy", train, val, test, 2, 1, 4, (0.5,), (0.2,), Augment(), ["x", "y"])
    report = data_report(data)
    assert report.leaks == 1 and report.leak_examples == ("val #0 = train #0",)
    assert report.sizes is None and "sizes" not in report.to_dict()


def test_the_data_command_prints_a_table_or_json(tmp_path, capsys):
    root = write_folder(tmp_path / "tiles", {"Free": 30, "Fray": 3})
    assert main(["data", f"folder:{root}", "--resolution", "16"]) == 0
    out = capsys.readouterr().out
    assert "Free" in out and "Fray" in out and "train" in out and "total" in out
    assert "imbalance (largest / smallest class): 10.0x" in out
    assert "warning: classes are imbalanced" in out
    # which augmentation trains, and why: a folder is not flipped unless asked
    assert "augmentation: shift 0.125 (reflect), no flip: a flip can change" in out
    assert main(["data", f"folder:{root}", "--augment", "textures"]) == 0
    assert "augmentation: hflip, vflip, shift 0.125 (reflect): flips assume" in \
        capsys.readouterr().out.replace("\n", " ")
    assert main(["data", f"folder:{root}", "--json", "--split-seed", "3"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["counts"]["total"] == {"Free": 30, "Fray": 3} and got["resolution"] == 32
    assert got["augment"] == "shift 0.125 (reflect)"
    assert got["sizes"]["aspect"] == [1, 1] and len(got["warnings"]) == 1


def test_the_data_command_refuses_a_missing_folder_in_one_line(tmp_path, capsys):
    assert main(["data", f"folder:{tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dla-nas data: error: folder: {tmp_path / 'nope'} does not exist"


def test_train_prints_the_warnings_and_keeps_the_report(tmp_path, capsys):
    root = write_folder(tmp_path / "tiles", {"Free": 24, "Fray": 3}, size=8)
    genome = tmp_path / "tiny.yaml"
    genome.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["train", str(genome), "--dataset", f"folder:{root}", "--resolution", "8",
                 "--epochs", "1", "--min-steps", "0", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "warning: classes are imbalanced (Free 24, Fray 3: 8x)" in capsys.readouterr().err
    report = json.loads((out / "metrics.json").read_text())["data_report"]
    assert report["counts"]["total"] == {"Free": 24, "Fray": 3}
    assert report["sizes"]["width"] == [8, 8, 8]


def test_search_keeps_the_report_in_the_data_of_run_yaml(tmp_path, capsys):
    from conftest import HAND_SPACE, write_space

    from dla_nas.search.core import SearchOptions, data_info, load_space

    root = write_folder(tmp_path / "tiles", {"Free": 24, "Fray": 3}, size=8)
    space = write_space(tmp_path, HAND_SPACE, task={"dataset": f"folder:{root}",
                                                    "resolution": 8})
    opts = SearchOptions(space=str(space), trials=1, out=str(tmp_path / "run"))
    info = data_info(load_space(opts), opts)
    assert info["report"]["counts"]["total"] == {"Free": 24, "Fray": 3}
    assert yaml.safe_load(yaml.safe_dump(info)) == info  # run.yaml can hold it
    (warning,) = info["warnings"]  # the display prints them when the run opens
    assert warning.startswith("classes are imbalanced")
    assert capsys.readouterr().err == ""  # the core prints nothing itself


def test_confirm_prints_the_warnings_of_its_data(tmp_path, capsys):
    from conftest import HAND_SPACE, write_space

    root = write_folder(tmp_path / "tiles", {"Free": 40, "Fray": 4}, size=8)
    space = write_space(tmp_path, HAND_SPACE, task={"dataset": f"folder:{root}",
                                                    "resolution": 8})
    out = tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "1", "--out", str(out),
                 "--warm-start", "none"]) == 0
    capsys.readouterr()
    assert main(["confirm", str(out), "--trial", "0", "--seeds", "0", "--epochs", "1",
                 "--min-steps", "0", "--device", "cpu"]) == 0
    assert "warning: classes are imbalanced (Free 40, Fray 4: 10x)" in capsys.readouterr().err
