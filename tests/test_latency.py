"""Latency where the model runs: the exported graph in ONNX Runtime, in a pinned child process;
the `latency` command, and a search's latency objective and constraint."""

import json

import conftest
import pytest
from torch import nn

from dla_nas.arch.latency import measure, model_latency, onnx_graph
from dla_nas.cli import main
from dla_nas.errors import OptionError
from dla_nas.results import RunStore
from dla_nas.train.config import cpu_cores

pytest.importorskip("onnxruntime")


def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


def test_a_model_is_timed_in_onnx_runtime_with_its_spread():
    result = model_latency(small(), (1, 16, 16), threads=1, repeats=12)
    assert 0 < result.low_ms <= result.median_ms <= result.high_ms
    assert result.spread == pytest.approx((result.high_ms - result.low_ms) / result.median_ms)
    assert (result.repeats, result.threads) == (12, 1)
    assert result.runtime.startswith("onnxruntime ") and "CPUExecutionProvider" in result.runtime
    # a bigger graph takes longer: the figure measures the model, not the process around it
    big = nn.Sequential(*[nn.Conv2d(1 if i == 0 else 64, 64, 3, padding=1) for i in range(6)])
    assert model_latency(big, (1, 64, 64), repeats=12).median_ms > result.median_ms
    with pytest.raises(OptionError, match=r"^latency: threads 0, repeats 1"):
        measure(onnx_graph(small(), (1, 16, 16)), threads=0, repeats=1)


def test_the_latency_command(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_graph(small(), (1, 16, 16)))
    assert main(["latency", str(path), "--repeats", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == str(path) and out["median_ms"] > 0 and out["repeats"] == 5
    assert main(["latency", str(path), "--repeats", "5"]) == 0
    assert "ms median at batch 1" in capsys.readouterr().out
    (tmp_path / "model.yaml").write_text("stem: {}\n")
    assert main(["latency", str(tmp_path / "model.yaml")]) == 2
    assert "not an .onnx file" in capsys.readouterr().err
    assert main(["latency", str(tmp_path / "gone.onnx")]) == 2
    assert "gone.onnx: no such file" in capsys.readouterr().err
    # more threads than cores would time the scheduler, not the model
    assert main(["latency", str(path), "--threads", str(cpu_cores() + 1)]) == 2
    assert f"--threads: {cpu_cores() + 1} is not allowed (at most" in capsys.readouterr().err
    path.write_bytes(b"not a graph")
    assert main(["latency", str(path)]) == 2
    assert "cannot be run by ONNX Runtime" in capsys.readouterr().err


def test_a_search_times_its_trials_where_latency_is_an_objective(tmp_path, capsys):
    space = conftest.write_space(tmp_path, conftest.HAND_SPACE,
                                 objectives={"val_acc": "maximize", "latency_ms": "minimize"},
                                 constraints={"max_latency_ms": 1000.0})
    run = tmp_path / "run"
    assert main(["search", "--space", str(space), "--trials", "2", "--out", str(run),
                 "--latency-threads", "1"]) == 0
    records = RunStore(run).records()
    assert records and all(r.latency_ms > 0 and r.latency_from == "measured"
                           for r in records if r.status == "ok")
    # measured on the target: `latency --json` of an export gives its network and input,
    # and a search given those lines as its table takes their figure
    assert main(["export", str(run), "--trial", str(records[0].trial), "--onnx",
                 "--out", str(tmp_path / "exp")]) == 0
    (onnx,) = (tmp_path / "exp").glob("*.onnx")
    capsys.readouterr()
    assert main(["latency", str(onnx), "--repeats", "3", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["hash"], line["input_shape"]) == (records[0].hash, records[0].input_shape)
    table = tmp_path / "target.jsonl"
    table.write_text(json.dumps({**line, "median_ms": 123.0}) + "\n")
    again = tmp_path / "again"
    assert main(["search", "--space", str(space), "--trials", "2", "--out", str(again),
                 "--latency-table", str(table)]) == 0
    first = RunStore(again).records()[0]
    assert (first.hash, first.latency_ms, first.latency_from) == (records[0].hash, 123.0,
                                                                  "table")
    table.write_text('{"hash": "abc"}\n')
    assert main(["search", "--space", str(space), "--trials", "2", "--out",
                 str(tmp_path / "bad"), "--latency-table", str(table)]) == 2
    assert "line 1 is not a line of `dla-nas latency" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["search", "--space", str(space), "--trials", "2", "--out", str(tmp_path / "bad"),
              "--latency-threads", "0"])
    assert exited.value.code == 2 and not (tmp_path / "bad").exists()
