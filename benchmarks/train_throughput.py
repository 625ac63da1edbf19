"""Training throughput of built networks against a hand-written DLA-34; prints JSON.

- train-step images/s and achieved MACs/s (3 x forward MACs per image: forward + backward)
  for dla34_cifar at batch 128 and 32 px, for the same network written by hand (the builder
  must add no overhead), and for a small searched-size genome on digits;
- the data path: time to draw and augment a batch against a whole training step;
- on CUDA, the fraction of the card's bf16 peak (pass --peak-tflops for the card);
- with ``--fronts``, the Pareto-front networks of the committed reference runs (neu-steel at
  64 px, digits-tiny at 16 px, their proxy batch sizes) in each training variant: eager (NCHW,
  the trainer's CPU path before 2026-12-07), ``nchw_pool`` (eager with PyTorch's NCHW
  max-pool, the builder's before ``blocks.max_pool`` pooled in channels_last order),
  channels_last (the trainer's CPU path since), ``bf16`` (channels_last under the CPU's bf16
  autocast) and ``torch.compile``; with the share of the practical peak (dla34_cifar's MACs/s
  in the same run) and the compile time;
- with ``--profile``, where a channels_last training step of each front network spends its
  CPU time (torch.profiler's self time of the ATen ops, grouped: convolution, batch norm,
  activation, optimiser, the rest);
- with ``--side-by-side STEPS``, two copies of each front network trained at once on one
  thread each: in two processes (a search's ``--workers 2``) against two Python threads of one
  process (several small trials per process); the total images/s of each.
- with ``--eval``, the same networks' evaluation pass (no autograd, the trainer's evaluation
  batch) with either max-pool.

    python benchmarks/train_throughput.py [--device cpu] [--steps 3] [--threads N] [--fronts]
        [--eval] [--profile] [--side-by-side STEPS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dla_nas import Genome, build_model, front, load_run
from dla_nas.analysis import run_objectives
from dla_nas.arch import blocks, builder, unet, zoo
from dla_nas.arch.cost import model_cost
from dla_nas.data import DataConfig, load_dataset, make_loader
from dla_nas.results import RunStore
from dla_nas.train.config import TrainConfig
from dla_nas.train.trainer import param_groups, resolve_device

ROOT = Path(__file__).resolve().parents[1]
FRONTS = ("results/reference-neu-steel", "results/reference-digits-tiny")
HAND = ("plain_cnn", "resnet8")
# "nchw_pool": eager with PyTorch's NCHW max-pool, the builder's before it pooled in
# channels_last order (the "before" of that change, in the same run)
VARIANTS = ("nchw_pool", "eager", "channels_last", "bf16", "compile")
# --profile: ATen ops (self CPU time) by kind; what matches none is "other"
OP_KINDS = {"convolution": ("convolution",), "batch_norm": ("batch_norm",),
            "activation": ("threshold_backward", "clamp_min", "relu"),
            "optimiser": ("Optimizer.",)}


# ---- a hand-written DLA-34 (CIFAR strides), the reference the builder must not be slower than
def _cbr(i, o, k=3, s=1):
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU(True))


class _Basic(nn.Module):
    def __init__(self, i, o, s):
        super().__init__()
        self.c1 = _cbr(i, o, 3, s)
        self.c2 = nn.Sequential(nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o))

    def forward(self, x, r):
        return F.relu(self.c2(self.c1(x)) + r)


class _Leaf(nn.Module):
    """Two blocks and a root over [x2, x1, *extra]."""

    def __init__(self, i, o, s, extra):
        super().__init__()
        self.b1, self.b2 = _Basic(i, o, s), _Basic(o, o, 1)
        self.pool = nn.MaxPool2d(s) if s > 1 else nn.Identity()
        self.proj = (nn.Sequential(nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o))
                     if i != o else nn.Identity())
        self.root = nn.Sequential(nn.Conv2d(2 * o + extra, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(True))

    def forward(self, x, extra=()):
        x1 = self.b1(x, self.proj(self.pool(x)))
        x2 = self.b2(x1, x1)
        return self.root(torch.cat([x2, x1, *extra], 1))


class _Deep(nn.Module):
    """Depth-2 tree with level_root: leaf(x) then leaf(y, [bottom, y])."""

    def __init__(self, i, o):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.t1, self.t2 = _Leaf(i, o, 2, 0), _Leaf(o, o, 1, i + o)

    def forward(self, x):
        y = self.t1(x)
        return self.t2(y, (self.pool(x), y))


class HandDLA34(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 16), _cbr(16, 16), _cbr(16, 32))
        self.l2 = _Leaf(32, 64, 1, 0)
        self.l3, self.l4 = _Deep(64, 128), _Deep(128, 256)
        self.pool5, self.l5 = nn.MaxPool2d(2), _Leaf(256, 512, 2, 256)
        self.fc = nn.Conv2d(512, classes, 1)

    def forward(self, x):
        x = self.l4(self.l3(self.l2(self.stem(x))))
        x = self.l5(x, (self.pool5(x),))
        return self.fc(F.adaptive_avg_pool2d(x, 1)).flatten(1)


# ---- measurement ---------------------------------------------------------------------------
def nchw_max_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """PyTorch's max-pool as it is (the builder's before it pooled in channels_last order)."""
    return F.max_pool2d(x, k, k, ceil_mode=True)


@contextlib.contextmanager
def pooling_with(pool):
    """The built networks max-pool with ``pool`` (every module that calls ``max_pool``)
    inside the block."""
    product = blocks.max_pool
    blocks.max_pool = builder.max_pool = unet.max_pool = pool
    try:
        yield
    finally:
        blocks.max_pool = builder.max_pool = unet.max_pool = product


def train_step(model, batch, res, chans, device, cuda, variant="eager", classes=10):
    """One training step of ``model`` on fixed random data in ``variant`` (SGD + Nesterov, bf16
    autocast on CUDA and in the ``bf16`` variant), as a function to call."""
    model.to(device).train()
    channels_last = cuda or variant in ("channels_last", "bf16")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(param_groups(model, 5e-4, 0.01), lr=0.01, momentum=0.9, nesterov=True)
    run = torch.compile(model) if variant == "compile" else model
    x = torch.randn(batch, chans, res, res, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)

    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda or variant == "bf16"):
            loss = F.cross_entropy(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def step_rate(model, batch, res, chans, device, steps, cuda, variant="eager", classes=10):
    """Train-step images/s, the best step time and the seconds of the two untimed first steps
    (a compile happens there)."""
    step = train_step(model, batch, res, chans, device, cuda, variant, classes)
    t0 = time.perf_counter()
    for _ in range(2):
        step()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return batch / best, best, first


def step_profile(genome, batch, res, chans, classes, steps: int) -> dict:
    """Milliseconds a channels_last CPU training step spends in each kind of op
    (``OP_KINDS``, self time of ATen ops and the optimiser), over ``steps`` profiled steps."""
    from torch.profiler import profile

    step = train_step(build_model(genome, classes, chans), batch, res, chans,
                      torch.device("cpu"), False, "channels_last", classes)
    for _ in range(2):
        step()
    with profile() as prof:
        for _ in range(steps):
            step()
    ms = dict.fromkeys([*OP_KINDS, "other"], 0.0)
    for event in prof.key_averages():
        kind = next((k for k, names in OP_KINDS.items()
                     if any(n in event.key for n in names)), "other")
        ms[kind] += event.self_cpu_time_total / 1e3 / steps
    total = sum(ms.values())
    return {"step_ms": round(total, 2),
            "share": {kind: round(v / total, 3) for kind, v in ms.items()}}


def _train_for(genome, chans, res, classes, batch, steps: int, seconds: list) -> None:
    """Train ``steps`` channels_last CPU steps on one thread after one warm-up; append the
    seconds they took to ``seconds`` (a list, or a queue between processes)."""
    torch.set_num_threads(1)
    step = train_step(build_model(genome, classes, chans), batch, res, chans,
                      torch.device("cpu"), False, "channels_last", classes)
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    (seconds.append if isinstance(seconds, list) else seconds.put)(time.perf_counter() - t0)


def side_by_side(genome, chans, res, classes, batch, steps: int) -> dict:
    """Total images/s of two copies trained at once: two processes, then two threads of this
    process (the GIL serialises what each step does in Python)."""
    work = (genome, chans, res, classes, batch, steps)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_for, args=(*work, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    in_procs = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    in_threads: list[float] = []
    threads = [threading.Thread(target=_train_for, args=(*work, in_threads)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {kind: round(2 * steps * batch / max(secs), 1)
            for kind, secs in (("processes", in_procs), ("threads", in_threads))}


def front_networks() -> list[tuple[str, Genome, int, int, int, int]]:
    """(label, genome, in_chans, resolution, classes, proxy batch) of the Pareto-front members
    of the committed reference runs, cheapest first, then two hand designs of their line at
    neu-steel's shape: ``plain_cnn`` (max-pools after each stage) and ``resnet8`` (none)."""
    out = []
    for folder in FRONTS:
        run = ROOT / folder
        info, data = RunStore(run).info(), RunStore(run).data()
        batch = info["space"]["proxy"]["batch_size"]
        for r in sorted(front(load_run(run), run_objectives(info)), key=lambda r: r.macs):
            genome = Genome.from_dict(r.genome)
            out.append((f"{Path(folder).name} trial {r.trial}", genome, data["in_chans"],
                        data["resolution"], data["num_classes"], batch))
    out += [(f"hand design {name}", zoo.load(name), 1, 64, 6, 64) for name in HAND]
    return out


def fronts(args, device, peak: float) -> list[dict]:
    """Each front network in each variant, timed in turn (best of ``--rounds``)."""
    rows = []
    for label, genome, chans, res, classes, batch in front_networks():
        macs = model_cost(build_model(genome, classes, chans), (chans, res, res)).macs
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                torch.manual_seed(0)
                pool = nchw_max_pool if variant == "nchw_pool" else blocks.max_pool
                with pooling_with(pool):
                    _, seconds, first = step_rate(build_model(genome, classes, chans), batch,
                                                  res, chans, device, args.steps, False, variant,
                                                  classes)
                old = best.get(variant, (float("inf"), first))
                best[variant] = (min(old[0], seconds), old[1])
        row = {"model": label, "macs_per_image": macs, "batch": batch, "resolution": res}
        for variant, (seconds, first) in best.items():
            gmacs = 3 * macs * batch / seconds / 1e9
            row[variant] = {"images_per_second": round(batch / seconds, 1),
                            "train_gmacs_per_second": round(gmacs, 2),
                            "share_of_peak": round(gmacs / peak, 3),
                            "first_two_steps_seconds": round(first, 2)}
        rows.append(row)
    return rows


@torch.no_grad()
def eval_rates(args, device) -> list[dict]:
    """Images/s of each front network's evaluation pass at the trainer's evaluation batch, with
    the NCHW max-pool and with the builder's, timed in turn (best of ``--rounds`` x ``--steps``)."""
    batch = TrainConfig().eval_batch_size
    pools = {"nchw_pool": nchw_max_pool, "eager": blocks.max_pool}
    rows = []
    for label, genome, chans, res, classes, _ in front_networks():
        model = build_model(genome, classes, chans).to(device).eval()
        x = torch.randn(batch, chans, res, res, device=device)
        best = dict.fromkeys(pools, float("inf"))
        for _ in range(args.rounds):
            for name, pool in pools.items():
                with pooling_with(pool):
                    model(x)  # warm-up
                    for _ in range(args.steps):
                        t0 = time.perf_counter()
                        model(x)
                        best[name] = min(best[name], time.perf_counter() - t0)
        row = {"model": label, "batch": batch, "resolution": res}
        row.update({name: {"images_per_second": round(batch / s, 1)} for name, s in best.items()})
        row["speed_up"] = round(best["nchw_pool"] / best["eager"], 3)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (best is kept)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="the models are timed in turn this many times (best is kept), so "
                             "that a slow moment of the machine does not favour one of them")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fronts", action="store_true",
                        help="also time the reference runs' front networks in each variant")
    parser.add_argument("--eval", action="store_true",
                        help="also time the front networks' evaluation with each max-pool")
    parser.add_argument("--profile", action="store_true",
                        help="also profile a channels_last step of each front network (CPU)")
    parser.add_argument("--side-by-side", type=int, default=0, metavar="STEPS",
                        help="also train two copies of each front network at once, in two "
                             "processes and in two threads, for STEPS steps (CPU)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the card's dense bf16 peak, for the fraction-of-peak figure")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    out = {"benchmark": "train_throughput", "device": str(device), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "runs": []}
    small = Genome.from_dict({"block": "basic", "stem": {"kernel": 3, "levels": [{"channels": 16}]},
                              "stages": [{"channels": 16, "stride": 1, "level_root": False},
                                         {"channels": 32}, {"channels": 64}]})
    cases = [("dla34_cifar (built)", lambda: build_model("dla34_cifar", 10), 128, 32, 3),
             ("dla34_cifar (hand-written)", lambda: HandDLA34(10), 128, 32, 3),
             ("small 16-32-64 (built)", lambda: build_model(small, 10, 1), 64, 16, 1)]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, make, batch, res, chans in cases:
            torch.manual_seed(0)
            # PyTorch's pool, as the hand-written network's: like for like, and the same
            # practical peak as the reports before the builder's own pool
            with pooling_with(nchw_max_pool):
                _, seconds, _ = step_rate(make(), batch, res, chans, device, args.steps, cuda)
            best[name] = min(best.get(name, float("inf")), seconds)
    for name, make, batch, res, chans in cases:
        macs = model_cost(make(), (chans, res, res)).macs
        ips = batch / best[name]
        row = {"model": name, "batch": batch, "resolution": res, "macs_per_image": macs,
               "images_per_second": round(ips, 1), "step_seconds": round(best[name], 4),
               "train_gmacs_per_second": round(3 * macs * ips / 1e9, 2)}
        if cuda and args.peak_tflops:
            row["fraction_of_bf16_peak"] = round(2 * 3 * macs * ips / (args.peak_tflops * 1e12), 4)
        out["runs"].append(row)
    if args.fronts and not cuda:
        peak = out["runs"][0]["train_gmacs_per_second"]  # dla34_cifar (built): the practical peak
        out["fronts"] = {"peak_gmacs_per_second": peak, "runs": fronts(args, device, peak)}
    if args.eval:
        out["eval"] = eval_rates(args, device)
    if args.profile and not cuda:
        out["profile"] = [{"model": label, **step_profile(genome, batch, res, chans, classes,
                                                           args.steps)}
                          for label, genome, chans, res, classes, batch in front_networks()]
    if args.side_by_side and not cuda:
        out["side_by_side"] = [
            {"model": label, "images_per_second": side_by_side(genome, chans, res, classes,
                                                               batch, args.side_by_side)}
            for label, genome, chans, res, classes, batch in front_networks()]
    # data path: drawing + augmenting batches alone, against the measured step time
    data = load_dataset(DataConfig("digits", resolution=16)).to(device)
    loader = make_loader(data, "train", 64, device, train=True, seed=0, channels_last=cuda)
    epoch_times = []
    for _ in range(5):  # best of 5 epochs, like the step times
        t0 = time.perf_counter()
        for _batch in loader:
            pass
        if cuda:
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - t0)
    per_batch = min(epoch_times) / len(loader)
    step_s = out["runs"][-1]["step_seconds"]
    out["data_path"] = {"dataset": "digits@16px, batch 64", "seconds_per_batch": round(per_batch, 6),
                        "fraction_of_step": round(per_batch / (per_batch + step_s), 4)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
