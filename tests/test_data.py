"""Tests for dla_nas.data: splits, CIFAR/folder loading, safety checks and on-device batching."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from dla_nas import data
from dla_nas import download as data_download
from dla_nas.data import (
    Augment,
    DataConfig,
    DataError,
    DeviceLoader,
    FileSplit,
    Split,
    StreamLoader,
    load_dataset,
    make_loader,
    to_device,
)
from dla_nas.data.sources import cifar

# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return load_dataset(DataConfig("digits"))


def _index_sets(ds: data.Dataset) -> list[set[int]]:
    return [set(s.index.tolist()) for s in (ds.train, ds.val, ds.test)]


def test_digits_sizes_types_and_metadata(digits: data.Dataset) -> None:
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1077, 360, 360)
    for s in (digits.train, digits.val, digits.test):
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (1, 8, 8)
        assert s.labels.dtype == torch.int64
    assert (digits.num_classes, digits.in_chans, digits.resolution) == (10, 1, 8)
    assert digits.augment == Augment(shift=0.125, pad_mode="zeros") and not digits.streaming
    assert int(digits.train.images.max()) == 255  # 0..16 was scaled to 0..255
    assert digits.summary() == (
        "digits: train 1077 / val 360 / test 360, 10 classes, 8px, 1 ch, in-memory; "
        "augment shift 0.125 (zeros)"
    )


def test_digits_splits_are_disjoint_and_match_the_source(digits: data.Dataset) -> None:
    train, val, test = _index_sets(digits)
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 1797
    source = load_digits()
    for s in (digits.train, digits.val, digits.test):
        expected = np.rint(source.images[s.index.numpy()] * 255 / 16).astype(np.uint8)
        assert np.array_equal(s.images[:, 0].numpy(), expected)
        assert np.array_equal(s.labels.numpy(), source.target[s.index.numpy()])


def test_digits_read_without_scikit_learn_equal_load_digits(monkeypatch) -> None:
    """The digits come from scikit-learn's CSV file (no import of scikit-learn), or from
    ``load_digits`` where the file is not found: the same arrays either way."""
    import sklearn.datasets

    from dla_nas.data.sources import digits as source

    source_images, source_target = load_digits().images, load_digits().target

    def refused():
        raise AssertionError("load_digits was called: the CSV file was not read")

    for found in (True, False):
        if found:
            monkeypatch.setattr(sklearn.datasets, "load_digits", refused)
        else:
            monkeypatch.undo()
            monkeypatch.setattr(source.importlib.util, "find_spec", lambda name: None)
        images, target = source.digits_arrays()
        assert np.array_equal(images, source_images) and np.array_equal(target, source_target)
        assert target.dtype == np.int64


def test_digits_split_is_stratified(digits: data.Dataset) -> None:
    overall = np.bincount(load_digits().target) / 1797
    for s in (digits.train, digits.val, digits.test):
        share = np.bincount(s.labels.numpy(), minlength=10) / len(s)
        assert np.abs(share - overall).max() < 0.01


def test_digits_split_depends_on_seed_only(digits: data.Dataset) -> None:
    again = load_dataset(DataConfig("digits", seed=0))
    other = load_dataset(DataConfig("digits", seed=1))
    assert _index_sets(again) == _index_sets(digits)
    assert _index_sets(other)[2] != _index_sets(digits)[2]
    assert (len(other.train), len(other.val), len(other.test)) == (1077, 360, 360)


def test_digits_upscale_to_32(digits: data.Dataset) -> None:
    big = load_dataset(DataConfig("digits", resolution=32))
    assert big.train.images.shape == (1077, 1, 32, 32) and big.train.images.dtype == torch.uint8
    assert big.resolution == 32 and "32px" in big.summary()
    # bilinear upscaling keeps each image's mean brightness close to the original
    small_mean = digits.train.images.float().mean((1, 2, 3))
    big_mean = big.train.images.float().mean((1, 2, 3))
    assert torch.allclose(small_mean, big_mean, atol=6)


def test_train_fraction_halves_train_only(digits: data.Dataset) -> None:
    half = load_dataset(DataConfig("digits", train_fraction=0.5))
    assert len(half.train) == 539  # ceil(1077 / 2)
    assert (len(half.val), len(half.test)) == (360, 360)
    assert set(half.train.index.tolist()) < set(digits.train.index.tolist())
    full_counts = np.bincount(digits.train.labels.numpy(), minlength=10)
    half_counts = np.bincount(half.train.labels.numpy(), minlength=10)
    assert np.abs(half_counts - full_counts / 2).max() <= 1


def test_mean_std_come_from_train_split(digits: data.Dataset) -> None:
    x = digits.train.images.double() / 255
    assert digits.mean[0] == pytest.approx(float(x.mean()), abs=1e-6)
    assert digits.std[0] == pytest.approx(float(x.std(unbiased=False)), abs=1e-6)
    other = torch.cat([digits.val.images, digits.test.images]).double() / 255
    assert digits.mean[0] != pytest.approx(float(other.mean()), abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "mnist"},
         r"dataset: 'mnist' is not known \(allowed: digits, cifar10, cifar100, folder:PATH, "
         r"seg:PATH\)"),
        ({"name": "folder:"}, r"dataset: 'folder:' is not known"),
        ({"name": "digits", "train_fraction": 0},
         r"train_fraction: 0 is not allowed \(0 < x <= 1\)"),
        ({"name": "digits", "train_fraction": 1.5}, r"train_fraction: 1.5 is not allowed"),
        ({"name": "digits", "resolution": 4}, r"resolution: 4 is not allowed \(>= 8\)"),
        ({"name": "digits", "val_fraction": 0}, r"val_fraction: 0 is not allowed \(0 < x < 1\)"),
        ({"name": "digits", "val_fraction": 0.5, "test_fraction": 0.5},
         r"val_fraction \+ test_fraction: 1.0 is not allowed"),
        ({"name": "digits", "seed": -1}, r"seed: -1 is not allowed"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        DataConfig(**kwargs)


# ---------------------------------------------------------------- CIFAR

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def _batch_arrays(n: int, offset: int, num_classes: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [(offset + i) % num_classes for i in range(n)]
    return images, labels


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _write_cifar10(root: Path, per_batch: int = 20) -> Path:
    """A tiny cifar-10-batches-py folder in the official layout (bytes keys)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        images, labels = _batch_arrays(per_batch, b * per_batch, 10)
        batch = {b"batch_label": b"training batch", b"labels": labels, b"data": images,
                 b"filenames": [b"x.png"] * per_batch}
        _dump(folder / f"data_batch_{b}", batch)
    # the real files name numpy 1's module path; numpy 2 must still be allowed to load them
    first = folder / "data_batch_1"
    numpy1 = first.read_bytes().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    first.write_bytes(numpy1)
    images, labels = _batch_arrays(per_batch, 0, 10)
    # the test batch uses the current protocol: both encodings must load
    _dump(folder / "test_batch", {b"labels": labels, b"data": images},
          protocol=pickle.HIGHEST_PROTOCOL)
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                    b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return folder


def _tar(archive: Path, folder: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


def _cifar10_cfg(root: Path, **kwargs: object) -> DataConfig:
    return DataConfig("cifar10", data_dir=str(root), **kwargs)


def test_cifar10_from_folder(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    ds = load_dataset(_cifar10_cfg(tmp_path))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, 20)
    assert ds.train.images.shape == (80, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert (ds.num_classes, ds.in_chans, ds.resolution, ds.augment.hflip) == (10, 3, 32, True)
    assert not ds.augment.vflip
    assert ds.class_names == CIFAR10_NAMES
    train, val = set(ds.train.index.tolist()), set(ds.val.index.tolist())
    assert not train & val and train | val == set(range(100))
    assert np.bincount(ds.val.labels.numpy()).tolist() == [2] * 10  # stratified
    # row-major RGB: pixel (c, y, x) is data[c * 1024 + y * 32 + x]; test is the test batch
    images, labels = _batch_arrays(20, 0, 10)
    assert ds.test.labels.tolist() == labels
    assert int(ds.test.images[3, 2, 5, 7]) == int(images[3, 2 * 1024 + 5 * 32 + 7])


def test_cifar10_from_archive_and_resize(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path / "staging")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _tar(data_dir / "cifar-10-python.tar.gz", folder)
    ds = load_dataset(_cifar10_cfg(data_dir, resolution=16))
    assert (data_dir / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert ds.test.images.shape == (20, 3, 16, 16)
    assert len(ds.train) + len(ds.val) == 100


def test_cifar100_fine_labels_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"class{i:02d}" for i in range(100)]
    for split, n in (("train", 300), ("test", 100)):
        images, fine = _batch_arrays(n, 0, 100)
        _dump(folder / split, {b"data": images, b"fine_labels": fine,
                               b"coarse_labels": [f // 5 for f in fine]})
    _dump(folder / "meta", {b"fine_label_names": [n.encode() for n in names],
                            b"coarse_label_names": [b"c"] * 20})
    ds = load_dataset(DataConfig("cifar100", data_dir=str(tmp_path)))
    assert ds.num_classes == 100 and ds.class_names == names
    assert ds.test.labels.tolist() == list(range(100))  # fine, not coarse, labels
    assert (len(ds.train), len(ds.val), len(ds.test)) == (200, 100, 100)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path)
    marker = tmp_path / "MARKER"
    _dump(folder / "data_batch_1", {b"data": _Evil(marker), b"labels": [0]})
    refused = r"refused global '(os|posix|nt)\.system' in .*data_batch_1: CIFAR files hold only"
    with pytest.raises(DataError, match=refused):
        load_dataset(_cifar10_cfg(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize("member", ["../evil", "cifar-10-batches-py/../../evil"])
def test_tar_with_parent_path_is_refused(tmp_path: Path, member: str) -> None:
    data_dir = tmp_path / "a" / "b"
    data_dir.mkdir(parents=True)
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        payload = b"gotcha"
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match=r"refused member '.*evil'"):
        load_dataset(_cifar10_cfg(data_dir))
    assert not list(tmp_path.rglob("evil"))


def test_missing_cifar_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"no data in {tmp_path}.*--download.*--data-dir"):
        load_dataset(_cifar10_cfg(tmp_path))


def test_incomplete_cifar_folder_names_the_file(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing file .*data_batch_3"):
        load_dataset(_cifar10_cfg(tmp_path))


class _FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _fake_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, md5: str | None) -> list[str]:
    """Serve a tiny CIFAR-10 archive through a patched urlopen; return the requested URLs."""
    staging = tmp_path / "staging"
    _tar(tmp_path / "fake.tar.gz", _write_cifar10(staging))
    payload = (tmp_path / "fake.tar.gz").read_bytes()
    requested: list[str] = []

    def urlopen(url: str, timeout: float) -> tuple[_FakeResponse, list]:
        requested.append(url)
        return _FakeResponse(payload), []

    monkeypatch.setattr(data_download, "_open", urlopen)
    source = dataclasses.replace(cifar.CIFAR_SOURCES["cifar10"],
                                 md5=md5 or hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(cifar, "CIFAR_SOURCES", {**cifar.CIFAR_SOURCES, "cifar10": source})
    return requested


def test_download_writes_archive_after_md5_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    requested = _fake_download(tmp_path, monkeypatch, md5=None)
    data_dir = tmp_path / "cache"
    ds = load_dataset(_cifar10_cfg(data_dir, download=True))
    assert requested == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert (data_dir / "cifar-10-python.tar.gz").is_file() and len(ds.test) == 20
    assert "100%" in capsys.readouterr().err


def test_download_with_wrong_md5_is_rejected(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_download(tmp_path, monkeypatch, md5="0" * 32)
    data_dir = tmp_path / "cache"
    with pytest.raises(DataError, match="md5 .* does not match the expected 0{32}"):
        load_dataset(_cifar10_cfg(data_dir, download=True))
    assert list(data_dir.iterdir()) == []


# ---------------------------------------------------------------- image folders


def _image(path: Path, mode: str, size: tuple[int, int], value: int | tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def _mixed_folder(root: Path) -> Path:
    """Three classes, five images each: RGB PNGs, grayscale JPEGs, RGBA PNGs; mixed sizes."""
    for i in range(5):
        _image(root / "red" / f"{i}.png", "RGB", (20 + i, 30), (250, 10, 10))
        _image(root / "gray" / f"{i}.JPEG", "L", (40, 17 + i), 90)
        _image(root / "alpha" / f"{i}.PNG", "RGBA", (8, 8 + i), (10, 10, 250, 128))
    return root


def _labels_of(ds: data.Dataset) -> np.ndarray:
    return np.concatenate([s.labels.numpy() for s in (ds.train, ds.val, ds.test)])


def test_folder_mixed_modes_load_as_rgb(tmp_path: Path) -> None:
    ds = load_dataset(DataConfig(f"folder:{_mixed_folder(tmp_path)}", resolution=16))
    assert ds.class_names == ["alpha", "gray", "red"]
    assert (ds.in_chans, ds.resolution, ds.streaming) == (3, 16, False)
    assert ds.augment == Augment(shift=0.125, pad_mode="reflect")  # a folder: no flip assumed safe
    assert np.bincount(_labels_of(ds)).tolist() == [5, 5, 5]
    assert np.bincount(ds.val.labels.numpy()).tolist() == [1, 1, 1]
    images = torch.cat([ds.train.images, ds.val.images, ds.test.images])
    labels = torch.from_numpy(_labels_of(ds))
    assert images.shape == (15, 3, 16, 16) and images.dtype == torch.uint8
    red = images[labels == 2].float().mean((0, 2, 3))
    assert red[0] > 240 and red[1] < 20  # channel order is RGB
    assert torch.all(images[labels == 1] == 90)  # gray replicated into 3 channels


def test_folder_all_grayscale_gives_one_channel(tmp_path: Path) -> None:
    for i in range(4):
        _image(tmp_path / "plain" / f"{i}.png", "L", (12, 12), 40)
        _image(tmp_path / "bits" / f"{i}.bmp", "1", (12, 12), 1)
        # 16-bit: 128 * 257 must become 128, not be clipped to 255
        _image(tmp_path / "deep" / f"{i}.png", "I;16", (12, 12), 128 * 257)
    ds = load_dataset(DataConfig(f"folder:{tmp_path}", resolution=8))
    assert ds.in_chans == 1 and ds.train.images.shape[1:] == (1, 8, 8)
    images = torch.cat([ds.train.images, ds.val.images, ds.test.images])
    labels = torch.from_numpy(_labels_of(ds))
    by_class = {name: images[labels == k] for k, name in enumerate(ds.class_names)}
    assert torch.all(by_class["deep"] == 128)
    assert torch.all(by_class["plain"] == 40)
    assert torch.all(by_class["bits"] == 255)


def test_folder_corrupt_image_is_skipped_warned_and_counted(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path)
    bad = root / "red" / "broken.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    (root / "red" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=f"skipping unreadable image {bad}"):
        ds = load_dataset(DataConfig(f"folder:{root}"))
    assert ds.skipped == 1 and "skipped 1" in ds.summary()
    assert len(ds.train) + len(ds.val) + len(ds.test) == 15
    assert ds.resolution == 32  # folder default


def test_folder_empty_class_is_named(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path)
    (root / "zebra").mkdir()
    (root / "zebra" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match=r"class folder .*zebra has no images"):
        load_dataset(DataConfig(f"folder:{root}"))


def test_folder_single_class_is_refused(tmp_path: Path) -> None:
    for i in range(5):
        _image(tmp_path / "only" / f"{i}.png", "RGB", (8, 8), (1, 2, 3))
    with pytest.raises(DataError, match=r"has 1 class subfolder\(s\); >= 2 are needed"):
        load_dataset(DataConfig(f"folder:{tmp_path}"))


def test_folder_class_too_small_to_split_is_named(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path)
    for i in range(2):
        _image(root / "tiny" / f"{i}.png", "RGB", (8, 8), (1, 2, 3))
    with pytest.raises(DataError, match=r"class 'tiny' .* 2 readable image"):
        load_dataset(DataConfig(f"folder:{root}"))


def _split_folder(root: Path, splits: dict[str, int], classes=("a", "b")) -> Path:
    """``root/<split>/<class>/<i>.png``: ``splits[split]`` images a class, each class its own
    grey level."""
    for split, n in splits.items():
        for k, name in enumerate(classes):
            for i in range(n):
                _image(root / split / name / f"{split}{i}.png", "L", (10, 10), 40 + 80 * k)
    return root


def test_a_given_split_is_kept_and_val_drawn_from_train_without_val(tmp_path: Path) -> None:
    """PATH/{train,test}/<class>/ (a common download): test is the test/ folder, val a
    seeded stratified share of train/; with val/ all three are the folders."""
    root = _split_folder(tmp_path / "two", {"train": 10, "test": 3})
    ds = load_dataset(DataConfig(f"folder:{root}", resolution=8))
    assert ds.class_names == ["a", "b"]
    files = {s: sorted(ds.files[i] for i in getattr(ds, s).index.tolist())
             for s in ("train", "val", "test")}
    assert all("/test/" in f for f in files["test"]) and len(files["test"]) == 6
    assert all("/train/" in f for f in files["train"] + files["val"])
    assert (len(files["train"]), len(files["val"])) == (16, 4)  # 0.2 of 20, 2 a class
    assert np.bincount(ds.val.labels.numpy()).tolist() == [2, 2]
    again = load_dataset(DataConfig(f"folder:{root}", resolution=8, seed=1))
    assert sorted(again.val.index.tolist()) != sorted(ds.val.index.tolist())  # seeded
    assert sorted(again.test.index.tolist()) == sorted(ds.test.index.tolist())  # given
    three = load_dataset(DataConfig(
        f"folder:{_split_folder(tmp_path / 'three', {'train': 5, 'val': 2, 'test': 1})}",
        resolution=8, max_in_memory_bytes=0))  # streamed from disk: the same split
    assert (len(three.train), len(three.val), len(three.test)) == (10, 4, 2)
    assert all("/val/" in p for p in three.val.paths)


@pytest.mark.parametrize("spoil, message", [
    (lambda r: shutil.rmtree(r / "test"),
     r"has train/ and val/ but no test/ \(a given split"),
    (lambda r: (r / "test" / "b").rename(r / "test" / "c"),
     r"test has the classes a, c, .*train a, b \(the same are needed\)"),
    (lambda r: [p.write_bytes(b"broken") for p in (r / "val" / "b").iterdir()],
     r"the val split has no readable image of class 'b'"),
])
def test_a_bad_given_split_is_one_line(tmp_path: Path, spoil, message) -> None:
    root = _split_folder(tmp_path, {"train": 4, "val": 2, "test": 2})
    spoil(root)
    with pytest.raises(DataError, match=f"^folder: .*{message}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unreadable files are warned of
        load_dataset(DataConfig(f"folder:{root}", resolution=8))


def test_tiff_is_read_and_litter_and_other_files_are_left_out(tmp_path: Path) -> None:
    """TIFF (what many industrial cameras write) is an image type; macOS's ``._`` copies,
    ``__MACOSX`` and Thumbs.db are litter, left out quietly; a GIF and a subfolder beside a
    class's images are not read, and a warning names them."""
    root = _mixed_folder(tmp_path)
    for i in range(3):
        _image(root / "red" / f"t{i}.tif", "RGB", (20, 30), (250, 10, 10))
    (root / "red" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "red" / "Thumbs.db").write_bytes(b"cache")
    _image(root / "__MACOSX" / "red" / "0.png", "RGB", (8, 8), (0, 0, 0))
    _image(root / "gray" / "anim.gif", "L", (8, 8), 3)
    _image(root / "gray" / "more" / "0.png", "L", (8, 8), 3)
    with pytest.warns(UserWarning) as seen:
        ds = load_dataset(DataConfig(f"folder:{root}", resolution=8))
    assert ds.class_names == ["alpha", "gray", "red"] and ds.skipped == 0
    assert np.bincount(_labels_of(ds)).tolist() == [5, 5, 8]
    said = sorted(str(w.message) for w in seen)
    assert len(said) == 2, said
    assert "1 file(s) not read, not of an image type (.gif 1;" in said[0]
    assert said[1].endswith("gray: subfolder(s) more not read (images sit directly in their "
                            "folder)")


def test_a_seg_folder_given_as_a_folder_and_an_unknown_user_are_one_line(tmp_path) -> None:
    for kind in ("images", "masks"):
        for i in range(3):
            _image(tmp_path / kind / f"{i}.png", "L", (8, 8), 1)
    with pytest.raises(DataError, match=r"^folder: .* holds images/ and masks/, a "
                                        r"segmentation folder; give it as seg:"):
        load_dataset(DataConfig(f"folder:{tmp_path}"))
    for name in ("folder:~no-such-user-dla/x", "seg:~no-such-user-dla/x"):
        with pytest.raises(DataError, match=r"^(folder|seg): ~no-such-user-dla/x: "):
            load_dataset(DataConfig(name))


def test_a_folders_split_fingerprint_is_the_same_however_it_is_spelt(tmp_path, monkeypatch):
    """A confirmation or a saved state is matched by the split's fingerprint: ``~/imgs``,
    from any working directory, and the absolute path are one folder."""
    from conftest import write_folder

    root = write_folder(tmp_path / "home" / "imgs", {"a": 6, "b": 6}, size=8)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    prints = set()
    for cwd, name in ((tmp_path, "~/imgs"), (root, "~/imgs"), (tmp_path, str(root))):
        monkeypatch.chdir(cwd)
        prints.add(load_dataset(DataConfig(f"folder:{name}", resolution=8)).fingerprint())
    assert len(prints) == 1


def test_folder_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"folder: .*nowhere does not exist"):
        load_dataset(DataConfig(f"folder:{tmp_path / 'nowhere'}"))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"folder: .*file.png is not a folder"):
        load_dataset(DataConfig(f"folder:{tmp_path / 'file.png'}"))


def test_folder_streaming_matches_in_memory(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path)
    memory = load_dataset(DataConfig(f"folder:{root}", resolution=16))
    stream = load_dataset(DataConfig(f"folder:{root}", resolution=16, max_in_memory_bytes=1))
    assert stream.streaming and isinstance(stream.train, FileSplit)
    assert "streaming" in stream.summary() and not memory.streaming
    assert [len(s) for s in (stream.train, stream.val, stream.test)] == [9, 3, 3]
    assert stream.mean == pytest.approx(memory.mean) and stream.std == pytest.approx(memory.std)
    # same seed, same files: the evaluation batches are identical in both modes
    xs = [torch.cat([x for x, _ in make_loader(d, "val", 2, "cpu", train=False, seed=0,
                                               num_workers=0)]) for d in (memory, stream)]
    assert torch.equal(xs[0], xs[1])
    loader = make_loader(stream, "train", 4, "cpu", train=True, seed=0, num_workers=2)
    assert isinstance(loader, StreamLoader) and loader.mode == "streaming" and len(loader) == 2
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 16, 16)] * 2
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
    in_memory = make_loader(memory, "train", 4, "cpu", train=True, seed=0)
    assert sum(len(y) for _, y in batches) == sum(len(y) for _, y in in_memory) == 8


# ---------------------------------------------------------------- loaders


def _identity_norm(chans: int) -> dict[str, tuple[float, ...]]:
    # mean 0 and std 1/255 turn normalisation into a plain cast: x equals the uint8 pixels
    return {"mean": (0.0,) * chans, "std": (1 / 255,) * chans}


def _synthetic(n: int = 64, chans: int = 2, size: int = 8) -> Split:
    """Non-zero, left-right asymmetric images; label i marks sample i."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(1, 256, (n, chans, size, size), generator=g, dtype=torch.uint8)
    return Split(images, torch.arange(n))


HFLIP = Augment(hflip=True, pad_mode="zeros")


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """img moved by (dy, dx) with zero fill."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_device_loader_shapes_lengths_and_partial_batch() -> None:
    split = _synthetic(10)
    loader = DeviceLoader(split, 4, **_identity_norm(2))
    assert loader.mode == "in-memory" and len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 2, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    dropping = DeviceLoader(split, 4, drop_last=True, **_identity_norm(2))
    assert len(dropping) == 2 and [len(y) for _, y in dropping] == [4, 4]
    with pytest.raises(DataError, match="batch_size: 0 is not allowed"):
        DeviceLoader(split, 0, **_identity_norm(2))


def test_device_loader_normalises_with_train_stats(digits: data.Dataset) -> None:
    loader = make_loader(digits, "train", 256, "cpu", train=False, seed=0)
    x = torch.cat([b for b, _ in loader])
    assert len(x) == 1077
    assert float(x.mean()) == pytest.approx(0, abs=1e-4)
    assert float(x.std()) == pytest.approx(1, abs=1e-3)


def test_device_loader_shuffle_is_seeded_and_complete() -> None:
    split = _synthetic()

    def epochs(seed: int) -> list[torch.Tensor]:
        loader = DeviceLoader(split, 16, shuffle=True, pad=2, augment=HFLIP, seed=seed,
                              **_identity_norm(2))
        return [torch.cat([x.flatten() for x, _ in loader]) for _ in range(2)] + \
               [torch.cat([y for _, y in loader])]
    a, b, c = epochs(0), epochs(0), epochs(1)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], a[1])  # a new draw each epoch
    assert not torch.equal(a[2], c[2])  # another seed, another order
    assert sorted(a[2].tolist()) == list(range(64))


def test_random_crop_is_a_zero_filled_shift_within_pad() -> None:
    split, pad = _synthetic(), 2
    loader = DeviceLoader(split, 64, pad=pad, augment=Augment(pad_mode="zeros"), seed=3,
                          **_identity_norm(2))
    x, y = next(iter(loader))
    assert x.shape == split.images.shape
    shifts = set()
    for out, i in zip(x, y):
        src = split.images[i].float()
        found = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                 if torch.equal(out, _shift(src, dy, dx))]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # offsets really vary across the batch


def test_reflect_shift_mirrors_the_border_instead_of_filling_black() -> None:
    split, pad = _synthetic(), 2
    loader = DeviceLoader(split, 64, pad=pad, augment=Augment(pad_mode="reflect"), seed=3,
                          **_identity_norm(2))
    x, y = next(iter(loader))
    shifts = set()
    for out, i in zip(x, y):
        src = split.images[i].float()
        padded = torch.nn.functional.pad(src[None], (pad,) * 4, mode="reflect")[0]
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if torch.equal(out, padded[:, dy:dy + 8, dx:dx + 8])]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10


@pytest.mark.parametrize("axis", ["hflip", "vflip"])
def test_flip_is_random_mirror_and_no_flip_never_flips(axis: str) -> None:
    split = _synthetic()
    dim = -1 if axis == "hflip" else -2
    aug = Augment(**{axis: True})
    x, y = next(iter(DeviceLoader(split, 64, augment=aug, seed=0, **_identity_norm(2))))
    src = split.images[y].float()
    mirrored = torch.tensor([torch.equal(a, b.flip(dim)) for a, b in zip(x, src)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(x, src)])
    assert torch.all(mirrored ^ kept) and 10 < int(mirrored.sum()) < 54
    for seed in range(3):
        loader = DeviceLoader(split, 16, shuffle=True, seed=seed, **_identity_norm(2))
        for x, y in loader:
            assert torch.equal(x, split.images[y].float())


def test_augment_parse_and_errors() -> None:
    assert Augment.parse("none") == Augment()
    assert Augment.parse("hflip, shift") == Augment(hflip=True, shift=0.125)
    # the named presets, in the words a user thinks of their images in
    assert Augment.parse("textures") == Augment(hflip=True, vflip=True, shift=0.125)
    assert Augment.parse("objects") == Augment(hflip=True, shift=0.125)
    assert Augment.parse(" shift ") == Augment(shift=0.125)
    with pytest.raises(DataError, match=r"augment: 'rotate' is not allowed \(textures, "
                                        r"objects, shift, none, or a comma list"):
        Augment.parse("rotate")
    with pytest.raises(DataError, match=r"augment.pad_mode: 'edge' is not allowed"):
        Augment(pad_mode="edge")


def test_channels_last_keeps_values() -> None:
    split = _synthetic(8, chans=3)
    plain = next(iter(DeviceLoader(split, 8, pad=1, augment=HFLIP, seed=5,
                                   **_identity_norm(3))))[0]
    cl = next(iter(DeviceLoader(split, 8, pad=1, augment=HFLIP, seed=5, channels_last=True,
                                **_identity_norm(3))))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(
        memory_format=torch.channels_last)
    assert torch.equal(plain, cl)


def test_make_loader_train_and_eval_modes(digits: data.Dataset) -> None:
    val = make_loader(digits, "val", 100, "cpu", train=False, seed=0)
    assert isinstance(val, DeviceLoader) and len(val) == 4
    ys = [y for _, y in val]
    assert [len(y) for y in ys] == [100, 100, 100, 60]
    assert torch.equal(torch.cat(ys), digits.val.labels)  # in order, nothing dropped
    train = make_loader(digits, "train", 128, "cpu", train=True, seed=0)
    assert len(train) == 1077 // 128  # partial batch dropped
    assert not torch.equal(torch.cat([y for _, y in train]), digits.train.labels[: 8 * 128])
    with pytest.raises(DataError, match=r"split: 'holdout' is not known \(allowed: train, val"):
        make_loader(digits, "holdout", 8, "cpu", train=False, seed=0)


def test_make_loader_keeps_the_only_batch_of_a_tiny_train_set() -> None:
    tiny = load_dataset(DataConfig("digits", train_fraction=0.01))
    loader = make_loader(tiny, "train", 128, "cpu", train=True, seed=0)
    assert len(tiny.train) < 128 and len(loader) == 1
    assert len(next(iter(loader))[1]) == len(tiny.train)
    assert set(tiny.train.labels.tolist()) == set(range(10))


def test_to_device_and_dataset_to(digits: data.Dataset) -> None:
    moved = to_device(digits.val, "cpu")
    assert torch.equal(moved.images, digits.val.images) and moved.images.device.type == "cpu"
    assert digits.to("cpu").summary() == digits.summary()
