"""Dense prediction: image-mask folders (seg:PATH), joint augmentation, pixel metrics, the
DLA-up and FCN segmentation networks, and train / eval / export of a dense genome."""

import dataclasses
import json

import conftest
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dla_nas import build_model
from dla_nas.arch import zoo
from dla_nas.arch.backbone_genome import BackboneGenome, Head, genome_from_dict, genome_from_yaml
from dla_nas.arch.baselines import baseline_genome
from dla_nas.arch.genome import Genome
from dla_nas.cli import main
from dla_nas.data import Augment, DataConfig, load_dataset, make_loader
from dla_nas.data.config import IGNORE_INDEX
from dla_nas.data.report import data_report
from dla_nas.errors import DataError, GenomeError
from dla_nas.train.metrics import dense_metrics, learnt_little

DENSE = {"backbone": "plain_cnn_8_16_32", "task": "dense",
         "head": {"aggregation": "dla_up", "levels": 2, "width": 8}}


def write_seg(root, n=12, size=(16, 16), seed=0, classes=("bg", "blob", "stripe")):
    """``n`` grey images whose pixel value encodes their mask (class c is 80 * c + noise
    below 20), with a blob and a stripe at random places, so content and mask agree."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    h, w = size
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 5)
        mask[y:y + 6, x:x + 5] = 1
        mask[:, rng.integers(0, w - 2):][:, :2] = 2
        image = (mask * 80 + rng.integers(0, 20, (h, w))).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_a_seg_folder_loads_with_its_masks_and_class_names(tmp_path):
    root = write_seg(tmp_path / "seg", n=10)
    data = load_dataset(DataConfig(f"seg:{root}", resolution=16))
    assert data.dense and data.class_names == ["bg", "blob", "stripe"]
    assert data.train.labels.shape[1:] == (16, 16) and data.train.labels.dtype == torch.uint8
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    # the image's classes (its value // 80) are the mask's, pixel for pixel
    assert torch.equal(data.train.images[:, 0].long() // 80, data.train.labels.long())
    # squashed alike (bilinear and nearest): they differ at the edges only
    odd = load_dataset(DataConfig(f"seg:{write_seg(tmp_path / 'odd', size=(23, 13))}",
                                  resolution=16))
    agree = (odd.train.images[:, 0].long() // 80 == odd.train.labels.long()).float().mean()
    assert odd.train.labels.shape[1:] == (16, 16) and agree > 0.8
    report = data_report(data).to_dict()
    assert report["task"] == "dense" and report["counts"]["total"]["bg"] == 10
    # the given split: PATH/{train,val,test}/{images,masks}; no classes.txt: values as names
    for i, split in enumerate(("train", "val", "test")):
        write_seg(tmp_path / "given" / split, n=(5, 3, 2)[i], seed=i, classes=())
    given = load_dataset(DataConfig(f"seg:{tmp_path / 'given'}", resolution=16))
    assert (len(given.train), len(given.val), len(given.test)) == (5, 3, 2)
    assert given.class_names == ["0", "1", "2"]


def _classes(text: bytes):
    return lambda r: (r / "classes.txt").write_bytes(text)


@pytest.mark.parametrize("spoil, message", [
    (lambda r: (r / "masks" / "003.png").unlink(), r"image .*003.png has no mask"),
    (lambda r: Image.new("L", (4, 4)).save(r / "masks" / "extra.png"),
     r"mask .*extra.png has no image"),
    (lambda r: Image.new("L", (9, 9)).save(r / "masks" / "004.png"),
     r"mask .*004.png is 9x9, its image 16x16 \(the same size is required\)"),
    (lambda r: Image.fromarray(np.full((16, 16), 7, np.uint8)).save(r / "masks" / "005.png"),
     r"mask .*005.png has value 7, not a class \(0 to 2: bg, blob, stripe; 255 is ignored\)"),
    (lambda r: Image.new("RGB", (16, 16)).save(r / "masks" / "006.png"),
     r"mask .*006.png has mode RGB"),
    # defects drawn as 255, the ignored value: said, not trained as nothing
    (lambda r: [Image.fromarray((np.asarray(Image.open(m)) > 0).astype(np.uint8) * 255).save(m)
                for m in (r / "masks").glob("*.png")] and (r / "classes.txt").unlink(),
     r"every mask under .* is class 0 .*255 is the ignored value, so a mask drawn as 0 and "
     r"255 needs its 255 written as 1"),
    # a JPEG's compression turns 0 and 1 into 0, 1, 2, 3 ...: never read as classes
    (lambda r: [Image.open(m).save(m.with_suffix(".jpg")) or m.unlink()
                for m in (r / "masks").glob("*.png")],
     r"mask .*000.jpg is a JPEG, whose compression changes class values; save masks as PNG"),
    # masks drawn for viewing (0, 100, 200) are not 201 classes
    (lambda r: [Image.fromarray(np.asarray(Image.open(m)) * 100).save(m)
                for m in (r / "masks").glob("*.png")] and (r / "classes.txt").unlink(),
     r"the masks under .* hold the values 0, 100, 200, and no 1: write class i as value i"),
    (_classes("fond\nchât\n".encode("latin-1")), r".*classes.txt is not UTF-8 text"),
    (_classes(b"bg\n\nblob\nstripe\n"), r".*classes.txt line 2 is blank"),
    (_classes(b"bg\nblob\nblob\n"), r".*classes.txt names 'blob' twice \(lines 2 and 3\)"),
])
def test_a_bad_seg_folder_is_one_line_naming_the_file(tmp_path, spoil, message):
    root = write_seg(tmp_path / "seg")
    spoil(root)
    with pytest.raises(DataError, match=f"^seg: {message}"):
        load_dataset(DataConfig(f"seg:{root}", resolution=16))


def test_a_given_seg_split_without_val_draws_val_from_train(tmp_path):
    write_seg(tmp_path / "train", n=10, classes=())
    write_seg(tmp_path / "test", n=3, seed=1, classes=())
    data = load_dataset(DataConfig(f"seg:{tmp_path}", resolution=16))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 3)
    test = sorted(data.files[i] for i in data.test.index.tolist())
    assert all("/test/images/" in f for f in test)
    (tmp_path / "test").rename(tmp_path / "val")
    with pytest.raises(DataError, match=r"^seg: .* has train/ and val/ but no test/ \(a given "
                                        r"split: PATH/train and PATH/test"):
        load_dataset(DataConfig(f"seg:{tmp_path}", resolution=16))


def test_classes_txt_with_a_byte_order_mark_and_trailing_blank_lines_reads(tmp_path):
    root = write_seg(tmp_path / "seg", n=6)
    (root / "classes.txt").write_bytes("bg\nblob\nstripe\n\n\n".encode("utf-8-sig"))
    data = load_dataset(DataConfig(f"seg:{root}", resolution=16))
    assert data.class_names == ["bg", "blob", "stripe"]


def test_a_one_bit_mask_is_classes_0_and_1(tmp_path):
    root = write_seg(tmp_path / "seg", n=6, classes=())
    for mask in (root / "masks").glob("*.png"):
        Image.fromarray(np.asarray(Image.open(mask)) == 1).convert("1").save(mask)
    data = load_dataset(DataConfig(f"seg:{root}", resolution=16))
    assert data.class_names == ["0", "1"] and set(data.train.labels.unique().tolist()) == {0, 1}


def test_joint_augmentation_moves_the_mask_with_its_image(tmp_path):
    root = write_seg(tmp_path / "seg", n=20, size=(24, 24))
    for pad_mode in ("reflect", "zeros"):
        aug = Augment(hflip=True, vflip=True, shift=0.25, pad_mode=pad_mode)
        data = load_dataset(DataConfig(f"seg:{root}", resolution=24, augment=aug))
        loader = make_loader(data, "train", 8, "cpu", train=True, seed=0)
        stored = data.train.labels.long()
        moved = 0
        for x, y in loader:
            assert y.dtype == torch.int64 and y.shape == x.shape[:1] + x.shape[2:]
            raw = (x[:, 0] * data.std[0] + data.mean[0]) * 255  # back to the stored values
            scored = y != IGNORE_INDEX
            assert torch.equal(raw.round().long()[scored] // 80, y[scored])
            if pad_mode == "zeros":  # the zero border is not scored
                assert (raw.round()[~scored] == 0).all()
            moved += sum(not any(torch.equal(m, s) for s in stored) for m in y)
        assert moved  # the batches were augmented, not passed through


def test_pixel_metrics_against_hand_computed_values():
    cm = np.array([[50, 2, 0], [3, 5, 0], [0, 0, 0]])
    m = dense_metrics(cm, 0.5)
    assert m.n == 60 and m.acc == pytest.approx(55 / 60)
    assert m.per_class_iou == pytest.approx([50 / 55, 5 / 10, None])
    assert m.per_class_dice == pytest.approx([100 / 105, 10 / 15, None])
    assert m.miou == pytest.approx((50 / 55 + 0.5) / 2)
    assert m.balanced_acc == pytest.approx((50 / 52 + 5 / 8) / 2)  # mPA
    assert m.macro_f1 == pytest.approx((100 / 105 + 10 / 15) / 2)  # mean Dice
    # a class predicted but absent from the truth scores IoU 0
    assert dense_metrics(np.array([[5, 1], [0, 0]]), 0).per_class_iou == [5 / 6, 0.0]
    assert "answers bg for 60 of 60 pixels" in learnt_little([[56, 0], [4, 0]], ["bg", "x"],
                                                              "pixels")


@pytest.mark.parametrize("aggregation, levels", [("dla_up", 2), ("none", 1), ("ida", 2)])
def test_a_dense_network_answers_at_the_input_size(aggregation, levels):
    genome = genome_from_dict({**DENSE, "head": {"aggregation": aggregation, "levels": levels}})
    model = build_model(genome, 3, 1).eval()
    for h, w in ((37, 37), (29, 50), (16, 16)):
        with torch.no_grad():
            assert model(torch.randn(2, 1, h, w)).shape == (2, 3, h, w)
    assert genome.to_dict()["task"] == "dense"
    classify = genome_from_dict({**DENSE, "task": "classify"})
    assert "task" not in classify.to_dict()  # the default: older genomes keep their hashes
    assert classify.canonical_hash() != genome.canonical_hash()


def test_unet_is_a_dense_hand_design_at_any_input_size():
    standard = build_model(BackboneGenome("unet", task="dense"), 4, 1)
    assert 31_000_000 < sum(p.numel() for p in standard.parameters()) < 31_100_000
    narrow = build_model(baseline_genome("unet_8_16_32"), 3, 1).eval()
    for h, w in ((37, 37), (29, 50), (8, 8)):
        with torch.no_grad():
            assert narrow(torch.randn(2, 1, h, w)).shape == (2, 3, h, w)
    assert baseline_genome("unet_8_16_32").describe() == \
        "unet_8_16_32: a U-Net of widths 8-16-32"
    assert build_model("unet_8_16", 3, 1).genome == BackboneGenome("unet_8_16", task="dense")
    for bad, message in ((BackboneGenome("unet_8", task="dense"), "two or more widths"),
                         (BackboneGenome("unet_8_16"), r"^task: 'classify' is not allowed"),
                         (BackboneGenome("unet_8_16", task="dense", cut=1),
                          r"^cut: 1 is not allowed with backbone unet_8_16")):
        with pytest.raises(GenomeError, match=message):
            bad.validate()


def test_train_eval_and_export_a_dense_genome(tmp_path, capsys):
    root = write_seg(tmp_path / "seg", n=16)
    (tmp_path / "up.yaml").write_text(yaml.safe_dump(DENSE))
    run, seg = tmp_path / "run", f"seg:{root}"
    assert main(["train", str(tmp_path / "up.yaml"), "--dataset", seg, "--resolution", "16",
                 "--epochs", "2", "--batch-size", "4", "--threads", "1", "--json",
                 "--out", str(run)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= metrics["test_miou"] <= 1 and len(metrics["test_per_class_iou"]) == 3
    assert metrics["data_report"]["task"] == "dense"
    with Image.open(run / "test-masks.png") as figure:  # 4 test images, truth, predicted
        assert figure.size == (750, 1000)
    assert main(["eval", str(run / "checkpoint.pt"), "--dataset", seg]) == 0
    assert f"test mIoU {metrics['test_miou']:.4f}" in capsys.readouterr().out
    assert main(["export", str(run), "--weights", "--out", str(tmp_path / "exp")]) == 0
    (config,) = (tmp_path / "exp").glob("*.yaml")
    rebuilt = build_model(config, 3, 1, pretrained=config.with_suffix(".safetensors")).eval()
    assert rebuilt.genome.task == "dense"
    # a classifier on masks is a one-line error
    assert main(["train", "plain_cnn", "--dataset", seg, "--resolution", "16"]) == 2
    assert "masks need a dense network" in capsys.readouterr().err
    # predict: each class's share of the pixels, and the masks at the images' own size,
    # the same from the checkpoint and from its ONNX export
    pytest.importorskip("onnxruntime")
    assert main(["export", str(run), "--onnx", "--weights", "--out", str(tmp_path / "onnx")]) == 0
    (onnx,) = (tmp_path / "onnx").glob("*.onnx")
    shares = {}
    odd = write_seg(tmp_path / "odd", n=3, size=(23, 13)) / "images"  # not the model's size
    for model in (run, onnx):
        masks = tmp_path / f"masks-{model.suffix or 'run'}"
        capsys.readouterr()
        assert main(["predict", str(model), str(odd), "--json", "--masks", str(masks)]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(rows) == 3 and set(rows[0]["shares"]) == {"bg", "blob", "stripe"}
        assert all(sum(r["shares"].values()) == pytest.approx(1, abs=1e-3) for r in rows)
        shares[model.suffix] = [r["shares"] for r in rows]
        written = sorted(masks.glob("*.png"))
        with Image.open(written[0]) as mask:  # at the image's own size, w x h
            assert len(written) == 3 and mask.size == (13, 23)
    assert shares[""] == shares[".onnx"]
    assert main(["predict", "plain_cnn_8_16_32", str(root / "images")]) == 2  # not a model
    # masks never land among the images, nor two on one file
    assert main(["predict", str(run), str(odd), "--masks", str(odd / "masks")]) == 2
    assert "inside PATH" in capsys.readouterr().err
    Image.open(odd / "000.png").convert("RGB").save(odd / "000.jpg")
    assert main(["predict", str(run), str(odd), "--masks", str(tmp_path / "twice")]) == 2
    assert "would share the mask file" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists()


SEG_SPACE = {
    "name": "seg-test", "task": {"resolution": 16},
    "proxy": {"epochs": 2, "batch_size": 4},
    "objectives": {"val_acc": "maximize", "macs": "minimize"},
    "baselines": ["own", "own_cut1"],
    "backbone": {"name": "plain_cnn_8_16_32", "task": "dense", "cut": [0, 1],
                 "aggregation": ["none", "dla_up"], "levels": 2, "width": [8, 16]},
}


def test_miou_ranks_dense_spaces_only(tmp_path):
    from dla_nas.errors import SpaceError
    from dla_nas.search.space import SearchSpace

    raw = {**SEG_SPACE, "task": {"dataset": "digits", "resolution": 16},
           "objectives": {"val_miou": "maximize", "macs": "minimize"},
           "backbone": {**SEG_SPACE["backbone"], "task": "classify"}}
    with pytest.raises(SpaceError, match=r"^objectives.val_miou: not allowed in a space of "
                                         r"classifiers"):
        SearchSpace.from_dict(raw)


def test_search_confirm_and_export_a_dense_space(tmp_path, capsys):
    root = write_seg(tmp_path / "seg", n=16)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SEG_SPACE, "task": {**SEG_SPACE["task"],
                                                           "dataset": f"seg:{root}"}}))
    run = tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "3", "--out", str(run),
                 "--baselines", "unet_8_16"]) == 0
    info = yaml.safe_load((run / "run.yaml").read_text())
    # pixel accuracy mostly measures the background: a dense run ranks by mIoU
    assert dict(info["objectives"]) == {"val_miou": "maximize", "macs": "minimize"}
    assert info["data"]["task"] == "dense"
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    trained = [r for r in records if r["status"] == "ok"]
    assert trained and all(0 <= r["val_miou"] <= 1 for r in trained)
    assert {r["name"] for r in records} >= {"own", "own_cut1"}  # the warm start: FCNs
    assert [r["name"] for r in records if r["kind"] == "baseline"] == ["unet_8_16"]
    assert all(r["genome"]["task"] == "dense" for r in records)
    capsys.readouterr()
    assert main(["confirm", str(run), "--pareto", "--baselines", "unet_8_16", "--seeds", "0",
                 "--min-steps", "4", "--threads", "1"]) == 0
    shown = capsys.readouterr()
    assert "test mIoU" in shown.out + shown.err and "val mIoU" in shown.out + shown.err
    confirmed = [json.loads(line) for line in (run / "confirm.jsonl").read_text().splitlines()]
    assert "unet_8_16" in {c["label"] for c in confirmed}
    assert all(0 <= c["test_miou"] <= 1 and len(c["test_per_class_iou"]) == 3
               for c in confirmed)
    # a classifier in the line of a dense run is refused before anything trains
    assert main(["confirm", str(run), "--baselines", "plain_cnn", "--seeds", "5"]) == 2
    assert "plain_cnn is a classifier; the run's data need dense" in capsys.readouterr().err
    assert main(["search", "--space", str(space), "--trials", "4", "--out", str(run),
                 "--baselines", "resnet8"]) == 2  # and in a search's, before a trial
    assert "resnet8 is a classifier; the run's data need dense" in capsys.readouterr().err
    assert main(["pareto", str(run)]) == 0
    assert main(["export", str(run), "--pareto", "--weights", "--out",
                 str(tmp_path / "exp")]) == 0
    exported = [yaml.safe_load(p.read_text())["metadata"]
                for p in (tmp_path / "exp").glob("*.yaml")]
    by_trial = {c["trial"]: c for c in confirmed}  # one seed each
    assert exported and all(meta["trial"] in by_trial for meta in exported)
    for meta in exported:  # the confirmed figures a dense run ranks by
        assert meta["confirmed"]["test_miou"]["mean"] == by_trial[meta["trial"]]["test_miou"]
        assert meta["confirmed"]["val_miou_mean"] == by_trial[meta["trial"]]["val_miou"]
    # a classifier space on masks, and a dense space on class folders: one line each
    classify = {**SEG_SPACE["backbone"], "task": "classify"}
    space.write_text(yaml.safe_dump({**SEG_SPACE, "backbone": classify,
                                     "task": {"dataset": f"seg:{root}", "resolution": 16}}))
    assert main(["search", "--space", str(space), "--trials", "1",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "masks need a space of dense networks" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# ---- a DLA genome as the dense backbone: drawn with its decoder ------------------------------
DENSE_DLA_SPACE = {**conftest.HAND_SPACE, "name": "dense-dla-test",
                   "task": {"dataset": "seg:data/seg", "resolution": 16},
                   "proxy": {"epochs": 1, "batch_size": 4},
                   "objectives": {"val_miou": "maximize", "macs": "minimize"},
                   "decoder": {"aggregation": ["none", "dla_up", "ida"], "levels": [2, 3],
                               "width": 8, "upsample": ["deconv", "bilinear"]}}


def test_a_dla_genome_is_a_dense_backbone_as_data():
    inner = {**zoo.load("plain_cnn_8_16_32").to_dict(), "name": "mine"}
    genome = BackboneGenome.from_dict({"backbone": inner, "task": "dense",
                                       "head": {"aggregation": "dla_up", "levels": 2,
                                                "width": 8}})
    assert isinstance(genome.backbone, Genome) and genome.label == "mine"
    assert genome_from_dict(genome.to_dict()) == genome
    # the inner genome's name is a label: the same network, the same hash
    renamed = {**genome.to_dict(), "backbone": {**inner, "name": "other"}}
    assert genome_from_dict(renamed).canonical_hash() == genome.canonical_hash()
    # its levels' taps come before each max-pool (strides 2 and 4); DLA-up over both
    # answers at stride 2, an FCN over the deepest at 4
    assert genome.level_strides == [2, 4] and genome.output_stride == 2
    assert "at stride 2" in genome.describe()
    model = build_model(genome, num_classes=3, in_chans=1)
    assert model.output_stride == 2
    assert dataclasses.replace(genome, head=Head()).output_stride == 4
    assert model(torch.randn(2, 1, 19, 23)).shape == (2, 3, 19, 23)
    bad = {**inner, "stages": [{**inner["stages"][0], "channels": 0}]}
    with pytest.raises(GenomeError, match=r"^backbone\.stages\[0\]\.channels"):
        BackboneGenome.from_dict({"backbone": bad, "task": "dense"})
    with pytest.raises(GenomeError, match=r"^weights: 'imagenet' is not allowed with backbone "
                                          r"mine"):
        BackboneGenome.from_dict({"backbone": inner, "weights": "imagenet"})
    with pytest.raises(GenomeError, match=r"^head.levels: 3 is not allowed \(at most 2: "
                                          r"mine has 2 levels, cut 0\)"):
        BackboneGenome.from_dict({"backbone": inner, "head": {"aggregation": "ida",
                                                              "levels": 3}})


@pytest.mark.parametrize("name", ["plain_cnn_8_16_32", "resnet8", "dla46_c_cifar",
                                  "dla34_cifar_x0.25"])
def test_a_genome_knows_the_strides_a_backbone_taps(name):
    from dla_nas.backbones.taps import FeatureTaps
    from dla_nas.backbones.zoo import dla_backbone

    genome = zoo.load(name)
    model, taps = dla_backbone(genome, in_chans=1, input_size=64)
    measured = FeatureTaps(model, model.level_names, 1, 64).feature_info
    assert genome.tap_strides() == [d["reduction"] for d in measured]
    assert BackboneGenome(name).level_count == len(taps)


def test_a_dla_space_with_a_decoder_draws_dense_genomes_and_finds_them(tmp_path):
    import random

    from dla_nas.errors import SpaceError
    from dla_nas.search.space import SearchSpace
    from dla_nas.search.specs import FixedSuggester, RandomSuggester

    space = SearchSpace.from_yaml(conftest.write_space(tmp_path, DENSE_DLA_SPACE))
    assert space.dense and space.count()[0] > 8
    rng = random.Random(0)
    for _ in range(12):
        genome, _ = space.sample(RandomSuggester(rng), 16)
        assert isinstance(genome.backbone, Genome) and genome.task == "dense"
        again, _ = space.sample(FixedSuggester(space.find(genome)), 16)
        assert again.canonical_hash() == genome.canonical_hash()
    # a baseline is the zoo network with an FCN over its deepest level
    fcn = space.hand_design("plain_cnn_8_16_32")
    assert fcn.backbone.name == "plain_cnn_8_16_32" and fcn.head.aggregation == "none"
    assert space.find(fcn)["decoder.aggregation"] == "none"
    assert space.baseline("unet_8_16").unet == (8, 16)
    # a genome with two levels: three levels of aggregation are repaired to two
    values = {**space.find(fcn), "decoder.aggregation": "ida", "decoder.levels": 3,
              "decoder.width": 8}
    repaired, repairs = space.sample(FixedSuggester(values), 16)
    assert repaired.head.levels == 2
    assert repairs == ["decoder.levels: 3 -> 2 (the levels kept after cut 0)"]
    deeper = SearchSpace.from_dict({**DENSE_DLA_SPACE, "decoder": {"cut": [0, 3]}})
    cut, repairs = deeper.sample(FixedSuggester({**values, "decoder.cut": 3}), 16)
    assert cut.cut == 1 and repairs == ["decoder.cut: 3 -> 1 (the network has 2 levels)"]
    with pytest.raises(SpaceError, match=r"^decoder: not allowed in a backbone space"):
        SearchSpace.from_dict({**SEG_SPACE, "decoder": {"aggregation": "ida"}})
    with pytest.raises(SpaceError, match=r"^decoder.kernel: 5 is not allowed"):
        SearchSpace.from_dict({**DENSE_DLA_SPACE, "decoder": {"kernel": 5}})
    with pytest.raises(SpaceError, match=r"^baselines: resnet8 is not in this space"):
        SearchSpace.from_dict({**DENSE_DLA_SPACE, "decoder": {"aggregation": "dla_up"},
                               "baselines": ["resnet8"]})


def test_search_and_export_a_searched_dla_with_its_decoder(tmp_path):
    root = write_seg(tmp_path / "seg", n=16)
    space = conftest.write_space(tmp_path, DENSE_DLA_SPACE,
                                 task={"dataset": f"seg:{root}", "resolution": 16})
    run = tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "3", "--out", str(run)]) == 0
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert records[0]["name"] == "plain_cnn_8_16_32"  # the warm start: the FCN
    trained = [r for r in records if r["status"] == "ok"]
    assert len(trained) == 3 and all(0 <= r["val_miou"] <= 1 for r in trained)
    assert all("stages" in r["genome"]["backbone"] for r in trained)
    assert main(["status", str(run)]) == 0
    assert main(["pareto", str(run), "--by", "block"]) == 0
    assert main(["export", str(run), "--trial", "1", "--out", str(tmp_path / "exp")]) == 0
    exported = genome_from_yaml(next((tmp_path / "exp").glob("*.yaml")))
    assert exported.canonical_hash() == genome_from_dict(trained[1]["genome"]).canonical_hash()
    model = build_model(exported, num_classes=3, in_chans=1)
    assert model(torch.randn(1, 1, 17, 21)).shape == (1, 3, 17, 21)


def test_a_dense_dla_backbone_takes_weights_deep_strides_and_plots(tmp_path):
    from dla_nas.analysis.ablation import genome_property
    from dla_nas.weights.loading import write_state_dict
    from dla_nas.weights.transfer import Pretrained

    inner = zoo.load("resnet8")
    dense = BackboneGenome(inner, task="dense", head=Head("dla_up", 2, 8))
    # a file of the backbone network alone loads into it, as a search's proxy.pretrained does
    torch.manual_seed(1)
    path = tmp_path / "resnet8.safetensors"
    state = build_model(inner, 10, 1).state_dict()
    write_state_dict(state, path)
    model = build_model(dense, num_classes=3, in_chans=1)
    report = Pretrained(path).load_into(model, require_match=False)
    net = model.network[0].state_dict()
    assert report.coverage > 0.9 and all(torch.equal(net[k], state[k]) for k in report.loaded)
    # what pareto --by draws: the searched DLA's own topology, not a dict
    assert genome_property(dense.to_dict(), "block") == inner.block
    assert genome_property(dense.to_dict(), "ida") == genome_property(inner.to_dict(), "ida")
    # a genome whose strides need more than the 64 px dry run still builds
    deep = {"stem": {"kernel": 3, "stride": 2, "pool": True, "levels": [{"channels": 8,
                                                                          "stride": 2}]},
            "stages": [{"channels": 8, "depth": 1, "stride": 2}] * 4}
    deep_dense = BackboneGenome.from_dict({"backbone": deep, "task": "dense"})
    assert deep_dense.min_input_size() > 64
    assert build_model(deep_dense, 3, 1)(torch.randn(1, 1, 160, 160)).shape == (1, 3, 160, 160)
    # and one with no downsampled level says so
    flat = {"stem": {"kernel": 3, "levels": [{"channels": 8}]},
            "stages": [{"channels": 8, "depth": 1, "stride": 1}]}
    with pytest.raises(GenomeError, match=r"^backbone: DLA genome \w+ has no level a head can "
                                          r"take"):
        BackboneGenome.from_dict({"backbone": flat, "task": "dense"})
