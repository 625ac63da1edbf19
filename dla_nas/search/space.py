"""Search spaces: YAML files that declare the task, the proxy, the objectives, the
constraints, and a value spec for every genome field.

A value spec is a fixed value (``3``), a choice list (``[1, 3]``) or an int range
(``{low: 1, high: 3}`` with an optional ``step``). ``SearchSpace.sample(trial)`` maps an Optuna
trial to a Genome define-by-run; combinations that would not build are repaired
deterministically, and each repair is reported (see ``sample``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..arch.genome import BLOCKS, STRIDES, Genome
from ..checks import check, integer, number, odd, one_of, optional
from ..data import Augment, DataConfig
from ..errors import DataError, GenomeError, SpaceError, TrainError
from ..files import read_yaml
from ..train.trainer import TrainConfig
from .specs import (
    STAGE_CHECKS,
    STAGE_DEFAULTS,
    STEM_LEVEL_CHECKS,
    FixedSuggester,
    IntRange,
    RandomSuggester,
    Spec,
    Suggester,
    field_specs,
    mapping,
    parse_spec,
)

METRICS = {"val_acc": "maximize", "val_balanced_acc": "maximize", "macs": "minimize",
           "params": "minimize", "latency_ms": "minimize"}
CONSTRAINTS = {"max_macs": "macs", "max_params": "params", "max_latency_ms": "latency_ms"}
ENUMERATION_LIMIT = 200_000


# ---- the space -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """The data a space is searched on. ``augment``: ``none`` or a comma list of hflip,
    vflip, shift (default: the dataset's own, see ``dla_nas.data.DEFAULT_AUGMENT``)."""

    dataset: str
    resolution: int | None = None
    classes: int | None = None
    augment: str | None = None


@dataclass(frozen=True)
class Proxy:
    """Low-fidelity training settings applied to every trial."""

    epochs: int = 8
    # at least this many optimiser steps: a small data set gets more epochs
    min_steps: int = 0
    train_fraction: float = 1.0
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    # the last BN of every residual branch starts at zero, so deep trees start shallow
    zero_init_residual: bool = True
    # weight each class's loss by 1 / its frequency (imbalanced data)
    balanced_loss: bool = False

    def train_config(self, **settings: Any) -> TrainConfig:
        """The trainer's config of this proxy; ``settings``: device, threads, ..."""
        return TrainConfig(epochs=self.epochs, min_steps=self.min_steps,
                           batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           zero_init_residual=self.zero_init_residual,
                           balanced_loss=self.balanced_loss, **settings)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search space file."""

    name: str
    path: str
    raw: dict
    task: Task
    proxy: Proxy
    objectives: tuple[tuple[str, str], ...]
    constraints: dict[str, float]
    block: Spec
    cardinality: Spec
    width_multiplier: Spec
    channel_divisor: int
    stem_kernel: Spec
    stem_stride: Spec
    stem_levels: tuple[dict[str, Spec], ...]
    num_stages: Spec
    stages: tuple[dict[str, Spec], ...]

    # ---- loading ---------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        raw = read_yaml(path, SpaceError)
        try:
            return cls.from_dict(raw, str(path))
        except SpaceError as exc:
            raise SpaceError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, raw: Any, path: str = "<dict>") -> "SearchSpace":
        raw = mapping(raw, "space", {"name", "description", "task", "proxy", "objectives",
                                       "constraints", "genome"}, required={"task", "genome"})
        task = _dataclass(Task, raw["task"], "task")
        check("task.resolution", task.resolution, optional(integer(8)), SpaceError)
        if not isinstance(task.dataset, str):
            raise SpaceError(f"task.dataset: {task.dataset!r} is not allowed (digits, cifar10, "
                             "cifar100 or folder:PATH)")
        if task.augment is not None:
            try:
                Augment.parse(str(task.augment))
            except DataError as exc:
                raise SpaceError(f"task.{exc}") from None
        proxy = _dataclass(Proxy, raw.get("proxy", {}), "proxy")
        check("proxy.train_fraction", proxy.train_fraction, number(0, 1, low_open=True),
              SpaceError)
        try:
            proxy.train_config()  # the trainer's own rules check the rest
        except TrainError as exc:
            raise SpaceError(f"proxy.{exc}") from None
        objectives = _objectives(raw.get("objectives", {"val_acc": "maximize", "macs": "minimize"}))
        constraints = dict(mapping(raw.get("constraints", {}), "constraints", set(CONSTRAINTS)))
        for key, value in constraints.items():
            check(f"constraints.{key}", value, number(0, low_open=True), SpaceError)
        g = mapping(raw["genome"], "genome",
                     {"block", "cardinality", "width_multiplier", "channel_divisor", "stem",
                      "num_stages", "stages"}, required={"stem", "stages"})
        stem = mapping(g["stem"], "genome.stem", {"kernel", "stride", "levels"},
                        required={"levels"})
        if not isinstance(stem["levels"], list) or not stem["levels"]:
            raise SpaceError("genome.stem.levels: a non-empty list of level specs is required")
        stem_levels = tuple(
            field_specs(lv, f"genome.stem.levels[{i}]", STEM_LEVEL_CHECKS, {"convs": 1, "stride": 1})
            for i, lv in enumerate(stem["levels"]))
        divisor = g.get("channel_divisor", 8)
        check("genome.channel_divisor", divisor, integer(1), SpaceError)
        stages_raw = g["stages"]
        if isinstance(stages_raw, Mapping):
            stages_list = None
        elif isinstance(stages_raw, list) and stages_raw:
            stages_list = stages_raw
        else:
            raise SpaceError("genome.stages: a stage spec (mapping, used for every stage) or a "
                             "non-empty list of stage specs (one per stage) is required")
        default_n = len(stages_list) if stages_list is not None else None
        if "num_stages" not in g and default_n is None:
            raise SpaceError("genome.num_stages: required when genome.stages is one mapping")
        num_stages = parse_spec(g.get("num_stages", default_n), "genome.num_stages", integer(1))
        max_stages = max(num_stages.values()) if not isinstance(num_stages, IntRange) else num_stages.high
        if stages_list is not None and len(stages_list) < max_stages:
            raise SpaceError(f"genome.stages: {len(stages_list)} stage specs for up to "
                             f"{max_stages} stages (num_stages); give one per stage")
        stages = tuple(
            field_specs(stages_list[i] if stages_list is not None else stages_raw,
                         f"genome.stages[{i}]" if stages_list is not None else "genome.stages",
                         STAGE_CHECKS, STAGE_DEFAULTS)
            for i in range(max_stages))
        space = cls(
            name=str(raw.get("name", Path(path).stem)),
            path=path,
            raw=raw,
            task=task,
            proxy=proxy,
            objectives=objectives,
            constraints=constraints,
            block=parse_spec(g.get("block", "basic"), "genome.block", one_of(BLOCKS)),
            cardinality=parse_spec(g.get("cardinality", 32), "genome.cardinality", integer(1)),
            width_multiplier=parse_spec(g.get("width_multiplier", 1.0), "genome.width_multiplier",
                                   number(0, low_open=True)),
            channel_divisor=divisor,
            stem_kernel=parse_spec(stem.get("kernel", 3), "genome.stem.kernel", odd),
            stem_stride=parse_spec(stem.get("stride", 1), "genome.stem.stride", one_of(STRIDES)),
            stem_levels=stem_levels,
            num_stages=num_stages,
            stages=stages,
        )
        space._self_check()
        return space

    def _self_check(self) -> None:
        """Every sampled configuration must give a valid genome; check a few at random."""
        import random

        rng = random.Random(0)
        for _ in range(20):
            self.sample(RandomSuggester(rng), self.task.resolution or 32)

    def data_config(self, data_dir: str | None = None, *, train_fraction: float | None = None,
                    augment: Augment | None = None) -> DataConfig:
        """The data's config of this space's task (``train_fraction``: default the proxy's;
        ``augment``: default the task's, else the dataset's own)."""
        if augment is None and self.task.augment:
            augment = Augment.for_dataset(self.task.augment, self.task.dataset)
        fraction = self.proxy.train_fraction if train_fraction is None else train_fraction
        return DataConfig(self.task.dataset, resolution=self.task.resolution, data_dir=data_dir,
                          augment=augment, train_fraction=fraction)

    def with_task(self, dataset: str | None = None, resolution: int | None = None) -> SearchSpace:
        """This space searched on another dataset or resolution (``search --dataset``): the
        task is replaced, and so is ``classes``, which the new data decides."""
        if dataset is None and resolution is None:
            return self
        raw = json.loads(json.dumps(self.raw, default=str))
        task = dict(raw["task"])
        if dataset is not None:
            task["dataset"] = dataset
            task.pop("classes", None)
        if resolution is not None:
            task["resolution"] = resolution
        raw["task"] = task
        return SearchSpace.from_dict(raw, self.path)

    # ---- identity --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of the resolved space: a run continues only with the same space."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [m for m, _ in self.objectives]

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, trial: Suggester, resolution: int) -> tuple[Genome, list[str]]:
        """A valid Genome for this trial, and a note for every deterministic repair.

        Repairs: a stride-2 step that would receive a map smaller than 2x2 at ``resolution``
        becomes stride 1; bottleneck(x) widths are raised to the nearest width the block
        allows. IDA edges are offered only from stages ``j <= i - 2``."""
        repairs: list[str] = []
        block = self.block.draw(trial, "block")
        cardinality = self.cardinality.draw(trial, "cardinality")
        mult = self.width_multiplier.draw(trial, "width_multiplier")
        size = resolution
        stem_stride = self.stem_stride.draw(trial, "stem.stride")
        size, stem_stride = _fit_stride(size, stem_stride, "stem.stride", repairs)
        levels = []
        for i, spec in enumerate(self.stem_levels):
            where = f"stem.levels[{i}]"
            lv = {k: s.draw(trial, f"{where}.{k}") for k, s in spec.items()}
            lv["channels"] = self._width(lv["channels"], mult)
            size, lv["stride"] = _fit_stride(size, lv["stride"], f"{where}.stride", repairs)
            levels.append(lv)
        n = self.num_stages.draw(trial, "num_stages")
        stages = []
        for i in range(n):
            where = f"stages[{i}]"
            spec = self.stages[i]
            st = {k: s.draw(trial, f"{where}.{k}") for k, s in spec.items() if k != "ida_from"}
            st["ida_from"] = [j for j in range(i - 1)
                              if spec["ida_from"].draw(trial, f"{where}.ida_from.{j}")]
            st["channels"] = _fit_block_width(self._width(st["channels"], mult), block,
                                              cardinality, f"{where}.channels", repairs)
            size, st["stride"] = _fit_stride(size, st["stride"], f"{where}.stride", repairs)
            stages.append(st)
        try:
            genome = Genome.from_dict({
                "block": block, "cardinality": cardinality,
                "stem": {"kernel": self.stem_kernel.draw(trial, "stem.kernel"),
                         "stride": stem_stride, "levels": levels},
                "stages": stages,
            })
        except GenomeError as exc:  # a combination no repair covers: the space's fault
            raise SpaceError(f"genome: a sampled combination is invalid ({exc})") from None
        return genome, repairs

    def _width(self, channels: int, mult: float) -> int:
        if mult == 1:
            return channels
        d = self.channel_divisor
        return max(d, int(round(channels * mult / d)) * d)

    # ---- size ------------------------------------------------------------------------------
    def count(self) -> tuple[int, bool]:
        """(number of distinct genomes, exact?). Exact (by enumerating every configuration and
        hashing the genome) when there are at most 200,000 configurations; otherwise the
        number of configurations, an upper bound."""
        specs = self._named_specs()
        total = math.prod(len(s.values()) for _, s in specs)  # upper bound over num_stages
        if total > ENUMERATION_LIMIT:
            return self._configurations(), False
        names = [n for n, _ in specs]
        hashes = set()
        for combo in itertools.product(*(s.values() for _, s in specs)):
            genome, _ = self.sample(FixedSuggester(dict(zip(names, combo))),
                                    self.task.resolution or 32)
            hashes.add(genome.canonical_hash())
        return len(hashes), True

    def _named_specs(self) -> list[tuple[str, Spec]]:
        """Every spec with its parameter name, for all stage slots up to the maximum."""
        out = [("block", self.block), ("cardinality", self.cardinality),
               ("width_multiplier", self.width_multiplier), ("stem.kernel", self.stem_kernel),
               ("stem.stride", self.stem_stride), ("num_stages", self.num_stages)]
        for i, spec in enumerate(self.stem_levels):
            out += [(f"stem.levels[{i}].{k}", s) for k, s in spec.items()]
        for i, spec in enumerate(self.stages):
            out += [(f"stages[{i}].{k}", s) for k, s in spec.items() if k != "ida_from"]
            out += [(f"stages[{i}].ida_from.{j}", spec["ida_from"]) for j in range(i - 1)]
        return out

    def _configurations(self) -> int:
        """Configurations summed over the number of stages (stages beyond it are not drawn)."""
        fixed = [s for n, s in self._named_specs() if not n.startswith("stages[") and n != "num_stages"]
        head = math.prod(len(s.values()) for s in fixed)
        per_stage = []
        for i, spec in enumerate(self.stages):
            k = math.prod(len(s.values()) for k, s in spec.items() if k != "ida_from")
            per_stage.append(k * len(spec["ida_from"].values()) ** max(0, i - 1))
        return head * sum(math.prod(per_stage[:n]) for n in self.num_stages.values())


# ---- helpers ---------------------------------------------------------------------------------
def _fit_stride(size: int, stride: int, where: str, repairs: list[str]) -> tuple[int, int]:
    if stride == 2 and size < 2:
        repairs.append(f"{where}: 2 -> 1 (the map is already 1x1)")
        stride = 1
    return (size + 1) // 2 if stride == 2 else size, stride


def _fit_block_width(channels: int, block: str, cardinality: int, where: str,
                     repairs: list[str]) -> int:
    fitted = channels
    if block == "bottleneck":
        fitted = max(2, channels)
    elif block == "bottleneckx":
        fitted = max(32, math.ceil(channels / 32) * 32)
    if fitted != channels:
        repairs.append(f"{where}: {channels} -> {fitted} (the narrowest {block} width)")
    return fitted


def _dataclass(cls, raw: Any, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING}
    return cls(**mapping(raw, where, names, required))


def _objectives(raw: Any) -> tuple[tuple[str, str], ...]:
    raw = mapping(raw, "objectives", set(METRICS))
    if not raw:
        raise SpaceError("objectives: at least one is required (e.g. val_acc: maximize)")
    out = []
    for metric, direction in raw.items():
        if direction != METRICS[metric]:
            raise SpaceError(f"objectives.{metric}: {direction!r} is not allowed "
                             f"({METRICS[metric]})")
        out.append((metric, direction))
    return tuple(out)
