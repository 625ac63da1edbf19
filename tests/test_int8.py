"""export --int8: an exported network quantised to int8 by ONNX Runtime, calibrated on
training images, that predicts as the float graph does and carries its metadata."""

import json

import conftest
import pytest

from dla_nas.cli import main

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_int8_export_of_a_trained_network(tmp_path, capsys):
    root = conftest.write_folder(tmp_path / "data", {"a": 12, "b": 12, "c": 12}, size=16)
    run = tmp_path / "run"
    assert main(["train", "plain_cnn_8_16_32", "--dataset", f"folder:{root}", "--resolution",
                 "16", "--epochs", "3", "--min-steps", "20", "--out", str(run)]) == 0
    out = tmp_path / "exp"
    assert main(["export", str(run), "--onnx", "--weights", "--int8", "--out", str(out)]) == 0
    (int8,) = out.glob("*.int8.onnx")
    (float_graph,) = [p for p in out.glob("*.onnx") if p != int8]
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert {"class_names", "preprocessing", "hash", "input_shape"} <= set(props)
    assert json.loads(props["quantization"])["calibration"].startswith("20 train images")
    kinds = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds  # int8, not the float graph again
    answers = {}
    for graph in (float_graph, int8):
        capsys.readouterr()
        assert main(["predict", str(graph), str(root), "--json"]) == 0
        answers[graph] = [json.loads(line)["class"] for line in
                          capsys.readouterr().out.splitlines()]
    agree = sum(a == b for a, b in zip(answers[float_graph], answers[int8]))
    assert agree >= 0.9 * len(answers[int8])
    # quantising needs the trained weights: refused before anything is written
    assert main(["export", str(run), "--onnx", "--int8", "--out", str(tmp_path / "no")]) == 2
    assert "--int8: needs --onnx and --weights" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
