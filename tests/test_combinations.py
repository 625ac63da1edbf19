"""Each backend x sampler x early stopping (on Ray, the two that stop trials) runs a real
two-trial search through the command line. Optuna 5.1 once broke the Ray backend for every sampler but TPE (Tune pickles its
searcher, and the NSGA-II sampler came to hold a lock); a new release of Optuna or Ray that
breaks one combination fails here. On Ray, each sampler runs under both schedulers that stop
trials (ASHA, Pareto); no early stopping (Tune's plain FIFO) is the path of the Ray tests in
test_search_ray.py, and each case here costs ~11 s of a suite that must stay under 10 min."""

import logging
import shutil
import tempfile
import uuid

import conftest
import pytest
import ray
import yaml
from test_search_ray import MARK, kill_marked, wait_gone

from dla_nas.cli import main
from dla_nas.results import load_run

SAMPLERS = ("nsga2", "tpe", "random")
# tiny genomes at 8 px, two proxy epochs: the rung (one epoch) is reached
SPACE = {"name": "combo", "task": {"dataset": "digits", "resolution": 8},
         "proxy": {"epochs": 2, "batch_size": 256, "train_fraction": 0.3},
         "constraints": {"max_macs": 400_000},
         "genome": {"stem": {"kernel": 3, "levels": [{"channels": [4, 8]}]},
                    "stages": [{"channels": [4, 8], "stride": 1, "level_root": False}]}}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (2 CPUs, loopback), which each search joins; fails if its
    processes outlive it."""
    token = uuid.uuid4().hex[:12]
    tmp = tempfile.mkdtemp(prefix="dnc-", dir="/tmp")
    patch = pytest.MonkeyPatch()
    for key, value in (("RAY_TMPDIR", tmp), (MARK, token), ("RAY_USAGE_STATS_ENABLED", "0")):
        patch.setenv(key, value)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()
    left = wait_gone(token, 15)
    kill_marked(token)
    patch.undo()
    shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"


def search(tmp_path, capsys, *flags: str) -> tuple[dict, list]:
    """A two-trial search through ``main``: both backends report to the same display."""
    out = tmp_path / "run"
    space = conftest.write_space(tmp_path, SPACE)
    code = main(["search", "--space", str(space), "--trials", "2", "--out", str(out),
                 "--warm-start", "none", "--device", "cpu", *flags])
    assert code == 0
    printed = capsys.readouterr().err
    assert "trial 0: " in printed and "trial 1: " in printed and "Traceback" not in printed
    info = yaml.safe_load((out / "run.yaml").read_text())
    records = [r for r in load_run(out) if r.kind == "search"]
    assert sorted(r.trial for r in records) == [0, 1]
    for r in records:
        assert r.status in ("ok", "infeasible", "reused"), r.reason
        assert r.hash and r.genome and r.macs is not None
    return info, records


@pytest.mark.parametrize("early_stopping", ["pareto", "none"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_optuna(tmp_path, capsys, sampler, early_stopping):
    info, records = search(tmp_path, capsys, "--sampler", sampler, "--early-stopping", early_stopping)
    assert (info["sampler"], info["options"]["early_stopping"]) == (sampler, early_stopping)
    assert all(r.backend == "optuna" and r.sampler == sampler for r in records)


@pytest.mark.parametrize("early_stopping", ["pareto", "asha"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_ray(tmp_path, capsys, local_ray, sampler, early_stopping):
    info, records = search(tmp_path, capsys, "--backend", "ray", "--sampler", sampler,
                           "--early-stopping", early_stopping)
    assert (info["sampler"], info["options"]["early_stopping"]) == (sampler, early_stopping)
    assert all(r.backend == "ray" and r.sampler == sampler for r in records)
