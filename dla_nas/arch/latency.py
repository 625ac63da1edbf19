"""Latency where the model runs: ONNX Runtime's CPU execution provider at batch 1.

A measurement runs in a child process of its own (``python -m dla_nas.arch.latency``),
pinned to ``threads`` CPUs with that many intra-op threads, so that the trainer's threads
and whatever else the parent runs do not share its cores. After ``warmup`` runs it times
``repeats`` runs and reports their median, 10th and 90th percentiles and the spread between
those relative to the median (``Latency``): a percentile range, so that one run slowed by
another process does not swamp the figure. The exported graph is the one ``dla-nas export
--onnx`` writes, so a figure measured here is the deployed model's, and ``dla-nas latency
FILE.onnx`` measures the same way on the machine the model will run on.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import OptionError, WeightsError

REPEATS = 50
WARMUP = 10


def table_key(digest: str, input_shape: tuple[int, ...] | list[int]) -> str:
    """A latency table's key: a network (its genome hash) at one input (C x H x W)."""
    return f"{digest}@{'x'.join(map(str, input_shape))}"


def read_table(path: str | Path) -> dict[str, float]:
    """A latency table: the JSON lines of ``dla-nas latency EXPORT.onnx --json`` run on the
    target machine (each with ``hash``, ``input_shape`` and ``median_ms``), as
    ``table_key`` -> milliseconds; a later line for the same key wins. A line that is not
    such an object is an ``OptionError`` naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise OptionError(f"--latency-table {path}: cannot be read ({exc.strerror})") from None
    table = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = table_key(str(row["hash"]), [int(n) for n in row["input_shape"]])
            ms = float(row["median_ms"])
        except (ValueError, KeyError, TypeError):
            raise OptionError(f"--latency-table {path}: line {number} is not a line of "
                              "`dla-nas latency MODEL.onnx --json` (hash, input_shape and "
                              "median_ms)") from None
        if not ms > 0:
            raise OptionError(f"--latency-table {path}: line {number}: median_ms {ms} is not "
                              "allowed (> 0)")
        table[key] = ms
    return table


@dataclass(frozen=True)
class Latency:
    """One measurement: milliseconds per image at batch 1, over ``repeats`` runs."""

    median_ms: float
    low_ms: float  # 10th percentile
    high_ms: float  # 90th percentile
    spread: float  # (90th - 10th percentile) / median
    repeats: int
    threads: int
    runtime: str

    def to_dict(self) -> dict:
        return asdict(self)


def onnx_graph(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """``model`` (eval mode) as an ONNX graph for one ``input_shape`` (C, H, W) image, with
    the names and exporter that ``dla-nas export --onnx`` uses."""
    buffer = io.BytesIO()
    training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, *input_shape), buffer, input_names=["image"],
                              output_names=["logits"], dynamo=False)
    finally:
        model.train(training)
    return buffer.getvalue()


def measure(graph: bytes | Path, threads: int = 1, repeats: int = REPEATS,
            warmup: int = WARMUP) -> Latency:
    """The latency of an ONNX graph (its bytes, or a file), measured in a child process."""
    if threads < 1 or repeats < 2 or warmup < 0:
        raise OptionError(f"latency: threads {threads}, repeats {repeats}, warmup {warmup} "
                          "are not allowed (threads >= 1, repeats >= 2, warmup >= 0)")
    with tempfile.TemporaryDirectory(prefix="dla-nas-latency-") as folder:
        if isinstance(graph, bytes):
            path = Path(folder) / "model.onnx"
            path.write_bytes(graph)
        else:
            path = Path(graph)
        done = subprocess.run(
            [sys.executable, "-m", "dla_nas.arch.latency", str(path), str(threads),
             str(repeats), str(warmup)],
            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        name = "the model" if isinstance(graph, bytes) else str(graph)
        raise WeightsError(f"latency: {name} cannot be run by ONNX Runtime ({last[:200]})")
    return Latency(**json.loads(done.stdout.strip().splitlines()[-1]))


def model_latency(model: nn.Module, input_shape: tuple[int, ...], threads: int = 1,
                  repeats: int = REPEATS) -> Latency:
    """``measure`` of ``model`` exported to ONNX."""
    return measure(onnx_graph(model, input_shape), threads, repeats)


def _child(path: str, threads: int, repeats: int, warmup: int) -> dict:
    """In the child process: pin, load, warm up, time; the figures as a dict."""
    import numpy as np
    import onnxruntime as ort

    if hasattr(os, "sched_setaffinity"):  # Linux: the first ``threads`` CPUs allowed
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:threads])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]  # batch 1
    x = {spec.name: np.zeros(shape, dtype=np.float32)}
    for _ in range(warmup):
        session.run(None, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, x)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    median, low, high = statistics.median(times), times[len(times) // 10], \
        times[-1 - len(times) // 10]
    return {"median_ms": median, "low_ms": low, "high_ms": high, "spread": (high - low) / median,
            "repeats": repeats, "threads": threads,
            "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one latency measurement (a child process)")
    parser.add_argument("path")
    parser.add_argument("threads", type=int)
    parser.add_argument("repeats", type=int)
    parser.add_argument("warmup", type=int)
    a = parser.parse_args()
    print(json.dumps(_child(a.path, a.threads, a.repeats, a.warmup)))
