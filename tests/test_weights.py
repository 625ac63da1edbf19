"""Pretrained weights without a network: official- and timm-layout files made here, served
from 127.0.0.1, and the fine-tuning recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import pickle
import threading
from pathlib import Path

import pytest
import torch
from conftest import write_folder
from safetensors.torch import save_file

from dla_nas import build_model
from dla_nas.arch import zoo
from dla_nas.cli import main
from dla_nas.errors import WeightsError
from dla_nas.train.checkpoint import load_checkpoint
from dla_nas.train.config import TrainConfig
from dla_nas.train.trainer import param_groups, train
from dla_nas.weights import sources
from dla_nas.weights.transfer import IMAGENET_MEAN

NET = "dla46_c"  # official variant, 1.3M parameters: small enough for the suite


def official_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict as the official code saves it: plus the unused projections that
    its trees of depth > 1 create where the width changes (level4 of dla46_c)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for level, (c_in, c_out) in {"level4": (64, 128)}.items():
        state[f"{level}.project.0.weight"] = torch.randn(c_out, c_in, 1, 1)
        for name, value in (("weight", torch.ones(c_out)), ("bias", torch.zeros(c_out)),
                            ("running_mean", torch.zeros(c_out)),
                            ("running_var", torch.ones(c_out)),
                            ("num_batches_tracked", torch.tensor(0))):
            state[f"{level}.project.1.{name}"] = value
    return state


def hub_name(path: Path, stem: str) -> Path:
    """Rename ``path`` to ``<stem>-<first 8 hex of its sha256>.pth``, the torch hub pattern."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return path.rename(path.with_name(f"{stem}-{digest}.pth"))


@pytest.fixture(scope="module")
def source_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(NET, 1000, 3)
    with torch.no_grad():  # BN statistics that are not the defaults, so that they must load
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def official_file(tmp_path: Path, source_model) -> Path:
    path = tmp_path / "weights.pth"
    torch.save(official_state(source_model), path)
    return hub_name(path, NET)


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    redirects: dict[str, tuple[str, str]]  # path -> (location, X-Linked-Etag), as the hub does
    etag: bool = True
    truncate: bool = False


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if self.path in self.server.redirects:
            location, linked = self.server.redirects[self.path]
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("X-Linked-Etag", f'"{linked}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.server.etag:
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if self.server.truncate else body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.redirects = {}, {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DLA_NAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def serve_official(server, monkeypatch, path: Path) -> str:
    """Serve ``path`` as the official file of NET; return its URL."""
    server.files[f"/{path.name}"] = path.read_bytes()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setattr(sources, "OFFICIAL_URL", base + "{file}")
    monkeypatch.setitem(sources.OFFICIAL_FILES, NET, path.name)
    return base + path.name


def backbone_equal(model: torch.nn.Module, reference: torch.nn.Module) -> bool:
    ref = reference.state_dict()
    return all(torch.equal(v, ref[k]) for k, v in model.state_dict().items()
               if not k.startswith("fc."))


# ---------------------------------------------------------------- layouts


def test_official_layout_loads_with_a_new_head(official_file: Path, source_model) -> None:
    model = build_model(NET, 6, 3, pretrained=official_file)
    report = model.transfer_report
    assert backbone_equal(model, source_model)
    assert report.missing == ["fc.weight", "fc.bias"]  # the new head for 6 classes
    skipped = dict(report.skipped)
    assert skipped["level4.project.0.weight"] == "not in this network"
    assert skipped["fc.weight"].startswith("shape (1000, 256, 1, 1)")
    head = 256 * 6 + 6
    total = sum(p.numel() for p in model.parameters())
    assert report.coverage == pytest.approx(1 - head / total)
    assert report.checked  # the name's hash was checked


def serve_timm(server, monkeypatch, tmp_path: Path, model: torch.nn.Module,
               linked: str | None = None) -> bytes:
    """Serve ``model`` in timm's layout as the hub does: a redirect that carries the file's
    sha256 (or ``linked``), to a CDN whose ETag is no sha256."""
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    body = path.read_bytes()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.etag = False
    server.files["/cdn/blob"] = body
    server.redirects[f"/timm/{NET}.in1k/resolve/main/model.safetensors"] = (
        f"{base}/cdn/blob", linked or hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(sources, "TIMM_URL", base + "/timm/{name}.in1k/resolve/main/"
                                                   "model.safetensors")
    return body


def test_timm_layout_from_the_hub_gives_the_same_logits(server, monkeypatch, cache: Path,
                                                       tmp_path: Path, source_model) -> None:
    serve_timm(server, monkeypatch, tmp_path, source_model)
    model = build_model(NET, 1000, 3, pretrained="timm").eval()
    assert model.transfer_report.coverage == 1.0
    assert model.transfer_report.checked  # against the sha256 sent with the redirect
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), source_model(x), rtol=1e-5, atol=1e-5)
    assert (cache / "timm" / f"{NET}.in1k.safetensors").is_file()
    server.files.clear()  # the second build reads the cache, checked again, without a server
    assert build_model(NET, 1000, 3, pretrained="timm").transfer_report.checked


def test_a_hub_hash_that_does_not_match_is_refused(server, monkeypatch, cache: Path,
                                                   tmp_path: Path, source_model) -> None:
    serve_timm(server, monkeypatch, tmp_path, source_model, linked="0" * 64)
    with pytest.raises(WeightsError, match="does not match the expected 0{64}"):
        build_model(NET, 1000, 3, pretrained="timm")
    assert not list((cache / "timm").iterdir())


@pytest.mark.parametrize("good", [True, False])
def test_a_url_with_a_sha256_is_checked(server, cache: Path, official_file: Path,
                                        good: bool) -> None:
    body = official_file.read_bytes()
    server.files["/w.pth"] = body
    digest = hashlib.sha256(body).hexdigest() if good else "f" * 64
    url = f"http://127.0.0.1:{server.server_address[1]}/w.pth#sha256={digest}"
    if good:
        assert build_model(NET, 6, 3, pretrained=url).transfer_report.checked
    else:
        with pytest.raises(WeightsError, match="does not match the expected f{64}"):
            build_model(NET, 6, 3, pretrained=url)


def test_official_download_is_cached_and_checked(server, monkeypatch, cache: Path,
                                                 official_file: Path, source_model) -> None:
    serve_official(server, monkeypatch, official_file)
    model = build_model(NET, 1000, 3, pretrained="official")
    assert model.transfer_report.source == f"official:{NET}"
    assert backbone_equal(model, source_model)
    assert sorted(p.name for p in cache.iterdir()) == [official_file.name,
                                                       official_file.name + ".sha256"]


def test_a_wrong_hash_is_refused_and_not_cached(server, monkeypatch, cache: Path,
                                                official_file: Path) -> None:
    url = serve_official(server, monkeypatch, official_file)
    server.files[f"/{official_file.name}"] += b"tampered"
    with pytest.raises(WeightsError, match=f"{url}: sha256 .* does not match the expected "
                                           f"{official_file.stem[-8:]}"):
        build_model(NET, 1000, 3, pretrained="official")
    assert not cache.exists() or list(cache.iterdir()) == []


def test_an_interrupted_download_leaves_no_partial_file(server, monkeypatch, cache: Path,
                                                        official_file: Path) -> None:
    serve_official(server, monkeypatch, official_file)
    server.truncate = True
    with pytest.raises(WeightsError, match="download of .* failed .*IncompleteRead"):
        build_model(NET, 1000, 3, pretrained="official")
    assert list(cache.iterdir()) == []


def test_offline_says_what_to_download_and_where(monkeypatch, cache: Path, capsys) -> None:
    monkeypatch.setattr(sources, "OFFICIAL_URL", "http://127.0.0.1:1/{file}")  # nothing listens
    assert main(["train", NET, "--pretrained", "official", "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"copy it to {cache / sources.OFFICIAL_FILES[NET]}" in err


def test_a_corrupt_file_in_the_cache_is_refused(monkeypatch, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / sources.OFFICIAL_FILES[NET]).write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="does not match the expected 2bfd52c3"):
        build_model(NET, 1000, 3, pretrained="official")


def test_a_hostile_pickle_is_refused_and_runs_nothing(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "weights.pth"
    torch.save({"level0.0.weight": Hostile()}, path)
    with pytest.raises(WeightsError, match="refused: it holds Python code or objects"):
        build_model(NET, 6, 3, pretrained=path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"x": Hostile()}))
    root = write_folder(tmp_path / "data", {"a": 4, "b": 4})
    assert main(["train", NET, "--pretrained", str(plain), "--dataset", f"folder:{root}",
                 "--resolution", "32", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("source, message", [
    ("official:resnet20", "'resnet20' has no ImageNet weights"),
    ("nowhere.pth", "'nowhere.pth': no such file"),
])
def test_bad_sources_are_one_line(source: str, message: str) -> None:
    with pytest.raises(WeightsError, match=message) as exc:
        build_model(NET, 6, 3, pretrained=source)
    assert len(str(exc.value).splitlines()) == 1


def test_a_file_for_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(WeightsError, match="none of its tensors matches this network"):
        build_model(NET, 6, 3, pretrained=path)


# ---------------------------------------------------------------- inheritance, channels


def test_coverage_is_full_for_the_zoo_network_and_known_for_a_neighbour(official_file) -> None:
    assert build_model(NET, 1000, 3, pretrained=official_file).transfer_report.coverage == 1.0
    genome = zoo.load(NET)
    last = dataclasses.replace(genome.stages[-1], channels=128)
    neighbour = dataclasses.replace(genome, stages=(*genome.stages[:-1], last), name="")
    model = build_model(neighbour, 6, 3, pretrained=official_file)
    params = dict(model.named_parameters())
    kept = sum(p.numel() for k, p in params.items() if not k.startswith(("level5.", "fc.")))
    assert model.transfer_report.coverage == pytest.approx(kept / sum(
        p.numel() for p in params.values()))
    assert 0.3 < model.transfer_report.coverage < 1.0


def test_grey_input_gives_the_rgb_output_of_the_repeated_image(official_file) -> None:
    rgb = build_model(NET, 1000, 3, pretrained=official_file).eval()
    grey = build_model(NET, 1000, 1, pretrained=official_file).eval()
    assert grey.transfer_report.adapted == ["base_layer.0.weight (3 -> 1 input channels)"]
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the fine-tuning recipe


def test_learning_rate_groups_split_backbone_and_head() -> None:
    model = build_model(NET, 6, 3)
    groups = {g["name"]: g for g in param_groups(model, 5e-4, 0.05, backbone_lr_mult=0.1)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(0.005) and groups["head"]["lr"] == 0.05
    assert {id(p) for p in groups["head"]["params"]} == {id(model.fc.weight)}
    assert groups["head_no_decay"]["weight_decay"] == 0.0


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    from dla_nas.data import DataConfig, load_dataset

    root = write_folder(tmp_path_factory.mktemp("steel"), {"a": 24, "b": 24, "c": 24}, size=24)
    return load_dataset(DataConfig(f"folder:{root}", resolution=24))


def test_a_frozen_backbone_and_frozen_bn_stay_as_loaded(folder_data) -> None:
    from dla_nas.arch.genome import Genome
    from dla_nas.data import make_loader
    from dla_nas.train.trainer import recalibrate_bn

    # a shallow net: frozen BN statistics of a random deep net blow gradients up
    tiny = {"stem": {"kernel": 3, "levels": [{"channels": 8}]},
            "stages": [{"channels": 16, "stride": 1, "level_root": False}, {"channels": 32}]}
    torch.manual_seed(0)
    model = build_model(Genome.from_dict(tiny), folder_data.num_classes, 1)
    loader = make_loader(folder_data, "train", 16, "cpu", train=False, seed=0, shuffle=True)
    recalibrate_bn(model, [x for _, (x, _) in zip(range(3), loader)])  # statistics as loaded
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changed: list[tuple[int, bool, bool]] = []

    def check(report) -> None:
        now = model.state_dict()
        backbone = any(not torch.equal(now[k], before[k]) for k in now
                       if not k.startswith("fc.") and "running" not in k
                       and "num_batches" not in k)
        stats = any(not torch.equal(now[k], before[k]) for k in now if "running" in k)
        changed.append((report.epoch, backbone, stats))

    cfg = TrainConfig(min_steps=0, epochs=2, batch_size=16, lr=0.01, device="cpu", freeze_epochs=1,
                      freeze_bn=True)
    assert not train(model, folder_data, cfg, callback=check).diverged
    assert not torch.equal(model.fc.weight, before["fc.weight"])
    assert changed == [(1, False, False), (2, True, False)]  # epoch 1: the head alone


def test_freeze_epochs_must_leave_an_epoch_to_train() -> None:
    with pytest.raises(ValueError, match="freeze_epochs"):
        TrainConfig(epochs=2, freeze_epochs=2)


def test_train_pretrained_fine_tunes_and_records_it(tmp_path: Path, official_file: Path,
                                                    capsys) -> None:
    root = write_folder(tmp_path / "data", {"a": 12, "b": 12}, size=24, mode="RGB")
    out = tmp_path / "run"
    assert main(["train", NET, "--pretrained", str(official_file), "--dataset",
                 f"folder:{root}", "--resolution", "32", "--epochs", "2", "--min-steps", "0",
                 "--batch-size", "8", "--device", "cpu", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["pretrained"]["source"] == str(official_file)
    assert ckpt["pretrained"]["new"] == ["fc.weight", "fc.bias"]
    assert ckpt["data"]["mean"] == [pytest.approx(sum(IMAGENET_MEAN) / 3)]  # grey: 1 channel
    assert ckpt["train_config"]["backbone_lr_mult"] == 0.1
    assert ckpt["train_config"]["freeze_epochs"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pretrained"]["coverage"] > 0.99
    assert metrics["train_config"] == ckpt["train_config"]  # a probe's settings, in the open
    assert "pretrained " in capsys.readouterr().err
    assert main(["eval", str(out / "checkpoint.pt"), "--dataset", f"folder:{root}"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_a_train_folder_exports_its_network_with_its_weights(tmp_path: Path, official_file: Path,
                                                             capsys) -> None:
    import yaml

    from dla_nas.train.checkpoint import checkpoint_model

    root = write_folder(tmp_path / "data", {"a": 12, "b": 12, "c": 12}, size=24, mode="RGB")
    out = tmp_path / "run"
    assert main(["train", NET, "--pretrained", str(official_file), "--dataset",
                 f"folder:{root}", "--resolution", "32", "--epochs", "2", "--min-steps", "0",
                 "--batch-size", "8", "--device", "cpu", "--out", str(out)]) == 0
    assert main(["export", str(out), "--trial", "0"]) == 2  # one network: no selector
    assert "--trial: not for" in capsys.readouterr().err
    assert main(["export", str(out), "--weights", "--out", str(tmp_path / "export")]) == 0
    config = next((tmp_path / "export").glob("*.yaml"))
    meta = yaml.safe_load(config.read_text())["metadata"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (meta["kind"], meta["num_classes"], meta["in_chans"]) == ("train", 3, 1)
    assert meta["pretrained"]["source"] == str(official_file)
    grey = meta["weights"]["normalisation"]  # ImageNet's, as the weights were trained on
    assert grey["mean"] == [pytest.approx(sum(IMAGENET_MEAN) / 3)] and len(grey["std"]) == 1
    assert meta["test_acc"] == ckpt["metrics"]["test_acc"]
    tensors = config.with_suffix(".safetensors")
    rebuilt = build_model(config, 3, 1, pretrained=tensors).eval()
    trained = checkpoint_model(ckpt, str(out / "checkpoint.pt")).eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(image), trained(image))

    # again without --weights: the config alone, and no stale weights beside it
    assert main(["export", str(out), "--out", str(tmp_path / "export")]) == 0
    assert config.is_file() and not tensors.exists()
    assert "weights" not in yaml.safe_load(config.read_text())["metadata"]
    ckpt["metrics"]["diverged"] = True  # nothing trained to export
    torch.save(ckpt, out / "checkpoint.pt")
    assert main(["export", str(out), "--weights", "--out", str(tmp_path / "again")]) == 2
    assert "its training diverged" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


# ---------------------------------------------------------------- searched genomes


def test_a_space_searched_from_pretrained_weights_records_coverage(tmp_path: Path) -> None:
    """Trials, confirm and export of a space with ``proxy.pretrained``: the weights are those
    of one of its own genomes (trial 0's, untrained), so that genome inherits everything."""
    import conftest
    import yaml

    from dla_nas.analysis.confirm import ConfirmStore
    from dla_nas.arch.genome import Genome
    from dla_nas.results import load_run

    space = {"name": "tiny", "task": {"dataset": "digits", "resolution": 8},
             "proxy": {"epochs": 2, "batch_size": 128},
             "genome": {"stem": {"kernel": 3, "levels": [{"channels": [4, 8]}]},
                        "stages": [{"channels": [8, 16], "stride": 1, "level_root": False},
                                   {"channels": 16, "depth": [1, 2]}]}}
    first = tmp_path / "scratch"
    assert main(["search", "--space", str(conftest.write_space(tmp_path, space)),
                 "--trials", "1", "--out", str(first)]) == 0
    source = next(r for r in load_run(first) if r.trial == 0)
    weights = tmp_path / "own.safetensors"
    model = build_model(Genome.from_dict(source.genome), 10, 1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))

    space["proxy"]["pretrained"] = str(weights)
    out = tmp_path / "warm"
    assert main(["search", "--space", str(conftest.write_space(tmp_path, space)),
                 "--trials", "3", "--out", str(out)]) == 0
    trained = [r for r in load_run(out) if r.status == "ok"]
    assert trained and all(r.pretrained["source"] == str(weights) for r in trained)
    too_big = tmp_path / "too-big"  # nothing is trained, so nothing started from the weights
    too_big.mkdir()
    assert main(["search", "--space", str(conftest.write_space(
        too_big, space, constraints={"max_macs": 1})), "--trials", "2",
        "--out", str(too_big / "run")]) == 0
    infeasible = load_run(too_big / "run")
    assert infeasible and all(r.status == "infeasible" and r.pretrained is None
                              for r in infeasible)
    assert all(0.0 < r.pretrained["coverage"] <= 1.0 for r in trained)
    twin = next(r for r in trained if r.hash == source.hash)  # the same seed draws it first
    assert twin.pretrained["coverage"] == 1.0

    export = ["export", str(out), "--trial", str(twin.trial), "--out", str(tmp_path / "export")]
    assert main([*export, "--weights"]) == 2  # nothing confirmed: no weights to export yet
    assert main(["confirm", str(out), "--trial", str(twin.trial), "--seeds", "0", "--epochs",
                 "1", "--min-steps", "0"]) == 0
    confirmed = ConfirmStore(out / "confirm.jsonl").records()
    assert confirmed[0].pretrained["coverage"] == 1.0
    assert confirmed[0].recipe["pretrained"] == str(weights)
    assert confirmed[0].recipe["backbone_lr_mult"] == 0.1  # the recipe of the proxy

    assert main([*export, "--weights"]) == 0
    config = next((tmp_path / "export").glob("*.yaml"))
    meta = yaml.safe_load(config.read_text())["metadata"]
    assert meta["pretrained"]["source"] == str(weights) and meta["pretrained"]["coverage"] == 1.0
    assert meta["weights"]["seed"] == 0 and meta["weights"]["from"] == "confirm"
    grey = meta["weights"]["normalisation"]  # ImageNet's grey statistics, as in the proxy
    assert grey["mean"] == [pytest.approx(sum(IMAGENET_MEAN) / 3)] and len(grey["std"]) == 1
    exported = config.with_suffix(".safetensors")
    assert exported.read_bytes() == (out / "weights" / confirmed[0].weights).read_bytes()
    rebuilt = build_model(config, 10, 1, pretrained=exported)
    assert rebuilt.transfer_report.coverage == 1.0


@pytest.mark.parametrize("pretrained, message", [
    ("official:resnet20", "proxy.pretrained: official: 'resnet20' has no ImageNet weights"),
    ("missing.pth", "proxy.pretrained: 'missing.pth': no such file"),
])
def test_a_bad_pretrained_source_in_a_space_names_the_key(pretrained: str, message: str) -> None:
    from dla_nas.errors import SpaceError
    from dla_nas.search.space import SearchSpace

    raw = {"task": {"dataset": "digits"}, "proxy": {"pretrained": pretrained},
           "genome": {"stages": [{"channels": 8}]}}
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(raw)
