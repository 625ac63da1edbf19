"""Class predictions for image files by a trained network, preprocessed as training and
evaluation preprocess them; a dense network's masks (a class a pixel) and class shares.

A model is one of three kinds (``load_predictor``): a ``dla-nas train`` folder or its
``checkpoint.pt``; a config exported with ``--weights`` (the ``.safetensors`` file named by
its ``metadata.weights.file`` lies beside it); or an exported ``.onnx`` file, run with
onnxruntime on the CPU. Each carries its preprocessing (channels, size, resize mode, mean
and std) and its class names, so a file is decoded by the same ``_decode`` and normalised
by the same arithmetic (``_BatchTransform``) as a batch of the network's own training data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data import IMAGE_EXTENSIONS, Augment
from ..data.config import RESIZE_MODES
from ..data.images import _decode, _map_safely, shown_size
from ..data.loaders import _BatchTransform
from ..errors import CheckpointError, DataError, DlaNasError, OptionError, WeightsError
from ..files import atomic_path, read_yaml

CHECKPOINT_SUFFIXES = (".pt", ".pth")
CONFIG_SUFFIXES = (".yaml", ".yml")
MODEL_KINDS = ("a `dla-nas train` folder or its checkpoint.pt, a config exported with "
               "--weights (.yaml), or an exported .onnx file")


def preprocessing_metadata(in_chans: int, resolution: int, resize: str,
                           mean: Sequence[float] | None,
                           std: Sequence[float] | None) -> dict[str, Any]:
    """The ``preprocessing`` an export writes and ``Preprocessing.from_metadata`` reads: a
    file is decoded (JPEG at a reduced scale where it stays at least ``size``), converted to
    grey or RGB, made square by ``resize`` with bilinear interpolation, scaled to 0..1 and
    normalised per channel by ``mean`` and ``std`` (None: a run from before they were
    recorded)."""
    return {"channels": "grey" if in_chans == 1 else "RGB", "size": [resolution, resolution],
            "resize": resize, "interpolation": "bilinear", "scale": "1/255",
            "mean": None if mean is None else list(mean),
            "std": None if std is None else list(std), "layout": "NCHW float32"}


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the network's input: decoded to ``in_chans`` channels (1:
    grey, 3: RGB) at ``resolution`` x ``resolution`` by ``resize``, then scaled to 0..1 and
    normalised per channel by ``mean`` and ``std``."""

    in_chans: int
    resolution: int
    resize: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_metadata(cls, meta: Any, where: str) -> Preprocessing:
        """The ``preprocessing`` an export writes (``preprocessing_metadata``); a value that is
        missing or not allowed raises ``WeightsError`` naming ``where`` and the key."""
        if not isinstance(meta, Mapping):
            raise WeightsError(f"{where}: preprocessing: missing (export it again with this "
                               "dla-nas, which records it)")
        channels, size, resize = meta.get("channels"), meta.get("size"), meta.get("resize")
        if channels not in ("grey", "RGB"):
            raise WeightsError(f"{where}: preprocessing.channels: {channels!r} is not allowed "
                               "(grey or RGB)")
        in_chans = 1 if channels == "grey" else 3
        if not (isinstance(size, list) and len(size) == 2 and size[0] == size[1]
                and type(size[0]) is int and size[0] >= 1):
            raise WeightsError(f"{where}: preprocessing.size: {size!r} is not allowed (a "
                               "square [N, N], N >= 1)")
        if resize not in RESIZE_MODES:
            raise WeightsError(f"{where}: preprocessing.resize: {resize!r} is not allowed "
                               f"({', '.join(RESIZE_MODES)})")
        mean, std = (_per_channel(meta.get(key), key, in_chans, where) for key in ("mean", "std"))
        return cls(in_chans, size[0], resize, mean, std)

    def decode(self, path: str) -> np.ndarray:
        """One image file as uint8 [C, H, W], as a folder dataset decodes it."""
        return _decode(path, self.in_chans, self.resolution, self.resize)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] -> float32 ``(x / 255 - mean) / std``, on ``images``' device,
        by the arithmetic of the training and evaluation loaders (bit for bit)."""
        transform = _BatchTransform(self.mean, self.std, Augment(), 0,
                                    torch.Generator(device=images.device), images.device,
                                    channels_last=False)
        return transform.normalise(images)


def _per_channel(values: Any, key: str, in_chans: int, where: str) -> tuple[float, ...]:
    """``values`` as one finite number per channel (std: each > 0), else ``WeightsError``."""
    ok = (isinstance(values, list) and len(values) == in_chans and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in values) and (key == "mean" or all(v > 0 for v in values)))
    if not ok:
        allowed = "a finite number > 0" if key == "std" else "a finite number"
        raise WeightsError(f"{where}: preprocessing.{key}: {values!r:.60} is not allowed "
                           f"({allowed} per channel, {in_chans} in all; an export from before "
                           "they were recorded: export it again)")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Predictor:
    """A loaded network with what it needs: ``forward`` maps a normalised float32 batch on
    ``device`` to float32 logits on the CPU."""

    path: Path
    kind: str  # "checkpoint", "config" or "onnx"
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    device: torch.device
    forward: Callable[[torch.Tensor], torch.Tensor]


def load_predictor(model: str | Path, device: str = "auto") -> Predictor:
    """The network at ``model`` (see the module docstring for the kinds) on ``device`` (cpu,
    cuda, cuda:N or auto; an ONNX file runs on the CPU). A path that is missing or of
    another kind raises ``OptionError``; a file that cannot be used, the kind's own error."""
    path = Path(model)
    if not path.exists():
        raise OptionError(f"MODEL {path}: no such file or folder (give {MODEL_KINDS})")
    if path.is_dir():
        if not (path / "checkpoint.pt").is_file():
            raise OptionError(f"MODEL {path}: a folder without checkpoint.pt (give {MODEL_KINDS})")
        return _from_checkpoint(path / "checkpoint.pt", device)
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return _from_checkpoint(path, device)
    if suffix in CONFIG_SUFFIXES:
        return _from_config(path, device)
    if suffix == ".onnx":
        return _from_onnx(path)
    raise OptionError(f"MODEL {path}: not a model dla-nas can run (give {MODEL_KINDS})")


def _torch_forward(model: torch.nn.Module, device: torch.device) -> Callable:
    """The ``forward`` of a torch network: eval mode, no gradients, and on CUDA the bfloat16
    autocast that evaluation uses."""
    model = model.to(device).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16,
                                                    enabled=device.type == "cuda"):
            return model(x).float().cpu()
    return forward


def _class_names(names: Any, num_classes: int, where: str,
                 error: type[DlaNasError]) -> tuple[str, ...]:
    """The outputs' names: ``names`` when recorded (else the output indices), checked to be
    ``num_classes`` strings."""
    if names is None:
        return tuple(str(i) for i in range(num_classes))
    if not (isinstance(names, list) and len(names) == num_classes
            and all(isinstance(n, str) for n in names)):
        raise error(f"{where}: class_names: {names!r:.60} is not allowed (a list of "
                    f"{num_classes} class names)")
    return tuple(names)


def _from_checkpoint(path: Path, device: str) -> Predictor:
    """A ``dla-nas train`` checkpoint, built as ``dla-nas eval`` builds it."""
    from ..train.checkpoint import checkpoint_model, load_checkpoint
    from ..train.trainer import resolve_device

    ckpt = load_checkpoint(path)
    data = ckpt["data"]
    resize = data.get("resize", "squash")  # older checkpoints: every image was squashed
    if resize not in RESIZE_MODES:
        raise CheckpointError(f"{path}: data.resize: {resize!r} is not allowed "
                              f"({', '.join(RESIZE_MODES)})")
    pre = Preprocessing(data["in_chans"], data["resolution"], resize,
                        tuple(map(float, data["mean"])), tuple(map(float, data["std"])))
    names = _class_names(data.get("class_names"), ckpt["num_classes"], f"{path}: data",
                         CheckpointError)
    target = resolve_device(device)
    model = checkpoint_model(ckpt, str(path))
    return Predictor(path, "checkpoint", pre, names, target, _torch_forward(model, target))


def _from_config(path: Path, device: str) -> Predictor:
    """An exported config with its trained weights beside it."""
    from ..arch.builder import build_model
    from ..train.trainer import resolve_device
    from .export import _whole

    config = read_yaml(path, WeightsError)
    meta = config.get("metadata") if isinstance(config, dict) else None
    weights = meta.get("weights") if isinstance(meta, dict) else None
    if not (isinstance(weights, dict) and isinstance(weights.get("file"), str)):
        raise WeightsError(f"MODEL {path}: a config without trained weights (no "
                           "metadata.weights); export it with `dla-nas export ... --weights`, "
                           "which writes them beside it")
    tensors = path.parent / weights["file"]
    if not tensors.is_file():
        raise WeightsError(f"MODEL {path}: its weights {tensors} are missing; export it again "
                           "with `dla-nas export ... --weights`")
    pre = Preprocessing.from_metadata(meta.get("preprocessing"), f"MODEL {path}: metadata")
    num_classes = meta.get("num_classes")
    if type(num_classes) is not int or num_classes < 1:
        raise WeightsError(f"MODEL {path}: metadata.num_classes: {num_classes!r} is not "
                           "allowed (an integer >= 1)")
    names = _class_names(meta.get("class_names"), num_classes, f"MODEL {path}: metadata",
                         WeightsError)
    target = resolve_device(device)
    model = build_model(path, num_classes, pre.in_chans, pretrained=tensors)
    if not _whole(model.transfer_report):
        raise WeightsError(f"MODEL {path}: its weights {tensors.name} do not load whole "
                           f"({model.transfer_report.summary()}); export it again")
    return Predictor(path, "config", pre, names, target, _torch_forward(model, target))


def _from_onnx(path: Path) -> Predictor:
    """An exported ONNX graph (input ``image``, output ``logits``) with the class names and
    preprocessing in its metadata, run by onnxruntime's CPU execution provider."""
    try:
        import onnxruntime
    except ImportError:
        raise OptionError(f"MODEL {path}: running an ONNX file needs onnxruntime: pip install "
                          "onnxruntime (or pip install 'dla-nas[onnx]')") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes on the console
    try:
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error classes: keep one line
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise WeightsError(f"MODEL {path}: onnxruntime cannot load it ({first[:200]})") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if "image" not in inputs or "logits" not in outputs:
        raise WeightsError(f"MODEL {path}: not an export of dla-nas (inputs {inputs}, outputs "
                           f"{outputs}; expected image and logits)")
    props = session.get_modelmeta().custom_metadata_map
    if props.get("trained") == "false":
        raise WeightsError(f"MODEL {path}: exported without trained weights (its answers would "
                           "be noise; it serves latency only): export it with --weights")
    where = f"MODEL {path}: metadata_props"
    try:
        meta = {key: json.loads(props[key]) for key in ("preprocessing", "class_names")
                if key in props}
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{where}: not JSON ({exc})") from None
    pre = Preprocessing.from_metadata(meta.get("preprocessing"), where)
    shape = next(o.shape for o in session.get_outputs() if o.name == "logits")
    axis = 1 if len(shape or ()) == 4 else -1  # a dense model's logits: N, classes, H, W
    classes = shape[axis] if shape and type(shape[axis]) is int else None
    names = meta.get("class_names")
    if classes is None and isinstance(names, list):
        classes = len(names)
    if classes is None:
        raise WeightsError(f"{where}: class_names: missing, and the logits have no fixed size")
    names = _class_names(names, classes, where, WeightsError)

    def forward(x: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(["logits"], {"image": x.cpu().numpy()})
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return Predictor(path, "onnx", pre, names, torch.device("cpu"), forward)


def find_images(path: str | Path) -> list[Path]:
    """``path`` itself when it is a file; for a folder, its image files
    (``IMAGE_EXTENSIONS``) at any depth, hidden files and folders left out, sorted by path.
    A missing path, or a folder without images, raises ``DataError``."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"PATH {path}: no such file or folder")
    found = sorted(p for p in path.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not found:
        raise DataError(f"PATH {path}: no image files in it or its subfolders (allowed: "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    return found


@dataclass(frozen=True)
class Prediction:
    """The class the network gives one file, and its softmax probability."""

    path: str
    index: int
    label: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """``path``, ``class`` and ``confidence`` (4 decimals), as the command writes them."""
        return {"path": self.path, "class": self.label, "confidence": round(self.confidence, 4)}


@dataclass(frozen=True)
class MaskPrediction:
    """A dense model's answer for one file: the class of each pixel (uint8 [H, W] at the
    model's input size) and each class's share of the pixels."""

    path: str
    mask: np.ndarray
    shares: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """``path`` and ``shares`` (4 decimals), as the command writes them."""
        return {"path": self.path, "shares": {k: round(v, 4) for k, v in self.shares.items()}}

    def save(self, dest: Path) -> None:
        """The mask as a PNG of class indices at the size of the image on disk (nearest:
        the classes stay classes), written atomically."""
        mask = Image.fromarray(self.mask).resize(shown_size(self.path),
                                                 Image.Resampling.NEAREST)
        with atomic_path(dest) as part:
            mask.save(part, format="PNG")


@dataclass
class Predictions:
    """The predictions for the readable files, in order, and the files that could not be
    read, each with its reason."""

    rows: list[Prediction] | list[MaskPrediction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def dense(self) -> bool:
        return bool(self.rows) and isinstance(self.rows[0], MaskPrediction)

    def counts(self, class_names: Sequence[str]) -> dict[str, int]:
        """Images per predicted class (masks: images where the class has a pixel), in output
        order; classes never predicted left out."""
        counted = Counter(name for r in self.rows for name in
                          ([n for n, v in r.shares.items() if v > 0] if self.dense else [r.label]))
        return {name: counted[name] for name in class_names if counted[name]}

    def to_csv(self) -> str:
        """``path,class,confidence`` and one row per prediction; masks: ``path`` and each
        class's share of the pixels."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self.dense:
            writer.writerow(["path", *self.rows[0].shares])
            writer.writerows([r.path, *(f"{v:.4f}" for v in r.shares.values())]
                             for r in self.rows)
            return buffer.getvalue()
        writer.writerow(["path", "class", "confidence"])
        writer.writerows([r.path, r.label, f"{r.confidence:.4f}"] for r in self.rows)
        return buffer.getvalue()

    def to_json_lines(self) -> str:
        """One JSON object (``Prediction.to_dict``) per line."""
        return "".join(json.dumps(r.to_dict()) + "\n" for r in self.rows)


def predict(predictor: Predictor, paths: Sequence[str | Path],
            batch_size: int = 64) -> Predictions:
    """Decode, normalise and classify ``paths`` in batches of ``batch_size``; a file that
    cannot be decoded is skipped and listed with the reason."""
    out = Predictions()
    pre = predictor.preprocessing
    for start in range(0, len(paths), batch_size):
        chunk = [str(p) for p in paths[start : start + batch_size]]
        kept, arrays = [], []
        for path, result in zip(chunk, _map_safely(pre.decode, chunk)):
            if isinstance(result, Exception):
                reason = next((line for line in str(result).splitlines() if line.strip()),
                              type(result).__name__)
                out.skipped.append((path, reason))
            else:
                kept.append(path)
                arrays.append(result)
        if not kept:
            continue
        images = torch.from_numpy(np.stack(arrays)).to(predictor.device)
        logits = predictor.forward(pre.normalise(images))
        index = logits.argmax(1)  # as evaluation picks the class
        if logits.dim() == 4:  # a class a pixel
            names = predictor.class_names
            for path, mask in zip(kept, index.to(torch.uint8).numpy()):
                counts = np.bincount(mask.ravel(), minlength=len(names)) / mask.size
                out.rows.append(MaskPrediction(path, mask, dict(zip(names, counts.tolist()))))
            continue
        confidence = logits.softmax(1).gather(1, index[:, None])[:, 0]
        out.rows += [Prediction(path, int(i), predictor.class_names[int(i)], float(c))
                     for path, i, c in zip(kept, index, confidence)]
    return out
