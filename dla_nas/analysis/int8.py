"""Int8 for deployment: an exported float ONNX graph quantised by ONNX Runtime's static
quantisation (QDQ format, int8 weights per channel and int8 activations), its activation
ranges calibrated on a seeded sample of training images preprocessed as the model expects.
The quantised graph keeps the float graph's metadata (class names, preprocessing, hash,
input shape) and says how it was made (``quantization``), so ``predict`` and ``latency``
take it as they take the float one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RunError
from ..files import atomic_path

CALIBRATION_IMAGES = 128  # enough for stable activation ranges, a few seconds to run


def int8_path(float_onnx: Path) -> Path:
    """Where the int8 graph of ``float_onnx`` goes: ``<name>.int8.onnx`` beside it."""
    return float_onnx.with_suffix(".int8.onnx")


def calibration_sample(images: torch.Tensor, count: int = CALIBRATION_IMAGES,
                       seed: int = 0) -> torch.Tensor:
    """A seeded sample of uint8 training images [N, C, H, W]."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)[:count]
    return images[order.to(images.device)].cpu()


def quantize(float_onnx: Path, images: torch.Tensor, source: str) -> Path:
    """Quantise ``float_onnx`` to ``int8_path(float_onnx)`` (written atomically), calibrated
    on ``images`` (uint8 [N, C, H, W], any size: resized to the graph's input) normalised by
    the graph's preprocessing; ``source`` names the images in the metadata."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    proto = onnx.load(str(float_onnx))
    props = {p.key: p.value for p in proto.metadata_props}
    if "preprocessing" not in props or "input_shape" not in props:
        raise RunError(f"{float_onnx}: no preprocessing or input_shape in its metadata (an "
                       "export of dla-nas is needed to calibrate)")
    pre, shape = json.loads(props["preprocessing"]), json.loads(props["input_shape"])
    if pre.get("mean") is None or pre.get("std") is None:
        raise RunError(f"{float_onnx}: its preprocessing has no mean and std (a run from "
                       "before they were recorded): its inputs cannot be calibrated")
    x = F.interpolate(images.float(), size=tuple(shape[1:]), mode="bilinear",
                      align_corners=False, antialias=True).round().clamp(0, 255) / 255
    mean = torch.tensor(pre["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(pre["std"]).view(1, -1, 1, 1)
    batches = [{"image": b[None].numpy().astype(np.float32)} for b in (x - mean) / std]

    class Sample(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    dest = int8_path(float_onnx)
    with atomic_path(dest) as part, tempfile.TemporaryDirectory() as folder:
        ready = Path(folder) / "ready.onnx"  # shapes inferred, graph optimised: as advised
        quant_pre_process(str(float_onnx), str(ready))
        quantize_static(str(ready), str(part), Sample(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8)
        quantized = onnx.load(str(part))
        del quantized.metadata_props[:]
        for key, value in {**props, "quantization": json.dumps({
                "method": "onnxruntime static, QDQ, int8 weights per channel, int8 "
                          "activations", "calibration": f"{len(batches)} {source}"})}.items():
            quantized.metadata_props.add(key=key, value=value)
        onnx.save(quantized, str(part))
    return dest
