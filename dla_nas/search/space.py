"""Search spaces: YAML files that declare the task, the proxy, the objectives, the
constraints, and a value spec for every genome field.

A value spec is a fixed value (``3``), a choice list (``[1, 3]``) or an int range
(``{low: 1, high: 3}`` with an optional ``step``). ``SearchSpace.sample(trial)`` maps an Optuna
trial to a Genome define-by-run: a field is drawn only where the genome uses it (a chain draws
``blocks``, a tree ``depth`` and ``fan_in``). Combinations that would not build are repaired
deterministically, and each repair is reported (see ``sample``). ``baselines`` lists the zoo
networks a space contains; each is checked to be reachable when the space is read.

The task's ``resolution`` and the proxy's ``lr`` and ``weight_decay`` may be specs too (a choice
list, or for lr and weight decay a range ``{low, high, log: true}``): they are then drawn per
trial with the genome (``sample_trial``), recorded as the trial's recipe, exported as its
training recipe and used by ``confirm``. Searches with fixed values draw and record none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..arch import zoo
from ..arch.backbone_genome import AnyGenome, BackboneGenome
from ..arch.baselines import baseline_genome
from ..arch.genome import BLOCKS, STRIDES, Genome
from ..checks import boolean, check, integer, number, odd, one_of, optional
from ..data import Augment, DataConfig, Dataset
from ..data.config import AUGMENTATIONS, PRESETS, RESIZE_MODES
from ..errors import DataError, GenomeError, SpaceError, TrainError, WeightsError
from ..files import read_yaml, safe_name
from ..train.config import TrainConfig, fine_tuning
from ..weights.sources import parse_source
from .backbone_space import FIELDS as HEAD_FIELDS
from .backbone_space import BackboneSpace, HeadSpace, is_own_hand_design
from .specs import (
    STAGE_CHECKS,
    STAGE_DEFAULTS,
    STEM_LEVEL_CHECKS,
    Fixed,
    FixedSuggester,
    FloatRange,
    IntRange,
    RandomSuggester,
    Recorder,
    Spec,
    Suggester,
    TargetSuggester,
    Unreachable,
    field_specs,
    mapping,
    parse_spec,
)

METRICS = {"val_acc": "maximize", "val_balanced_acc": "maximize", "val_miou": "maximize",
           "macs": "minimize", "params": "minimize", "latency_ms": "minimize"}
CONSTRAINTS = {"max_macs": "macs", "max_params": "params", "max_latency_ms": "latency_ms"}
ENUMERATION_LIMIT = 200_000


# ---- the space -------------------------------------------------------------------------------
# training settings a space may search (drawn per trial), with their parameter names
RECIPE = (("resolution", "task.resolution"), ("lr", "proxy.lr"),
          ("weight_decay", "proxy.weight_decay"), ("augment", "task.augment"),
          ("backbone_lr_mult", "proxy.backbone_lr_mult"),
          ("freeze_epochs", "proxy.freeze_epochs"))
TRAINING = ("lr", "weight_decay", "backbone_lr_mult", "freeze_epochs")  # TrainConfig's


def kept_init(proxy: Proxy, stored: Mapping[str, Any] | None) -> Proxy:
    """``proxy`` as a run whose run.yaml keeps the proxy ``stored`` trained: one without
    ``init`` was made before run.yaml kept it (the committed reference runs), from the
    official init."""
    return proxy if "init" in (stored or {}) else dataclasses.replace(proxy, init="official")


def _augment_rule(value: Any) -> str | None:
    """A task's augmentation: a preset or a comma list (``Augment.parse``)."""
    if isinstance(value, str):
        try:
            Augment.parse(value)
            return None
        except DataError:
            pass
    return f"{', '.join(PRESETS)}, or a comma list of {', '.join(AUGMENTATIONS)}"


@dataclass(frozen=True)
class Recipe:
    """The training settings a trial drew with its genome (the space's searched ``RECIPE``
    fields); None where the space does not search it: the task's or the proxy's own."""

    resolution: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    augment: str | None = None
    backbone_lr_mult: float | None = None
    freeze_epochs: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        """From a record's ``recipe`` (the searched settings only)."""
        return cls(**{key: data[key] for key, _ in RECIPE if key in data})

    def to_dict(self) -> dict[str, Any]:
        """The searched settings only, as a record keeps them (``TrialRecord.recipe``)."""
        return {key: getattr(self, key) for key, _ in RECIPE if getattr(self, key) is not None}

    def train_config(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with this recipe's training settings (``TRAINING``; its resolution is the
        data's, its augmentation ``on``'s)."""
        drawn = {k: v for k, v in self.to_dict().items() if k in TRAINING}
        return dataclasses.replace(cfg, **drawn)

    def on(self, data: Dataset) -> Dataset:
        """``data`` (at this recipe's resolution) with this recipe's augmentation."""
        if self.augment is None:
            return data
        return dataclasses.replace(data, augment=Augment.for_dataset(self.augment, data.name))


@dataclass(frozen=True)
class Task:
    """The data a space is searched on. ``augment``: a preset (textures, objects, shift,
    none) or a comma list of hflip, vflip, shift (default: the dataset's own, see
    ``dla_nas.data.DEFAULT_AUGMENT``). ``resolution`` and ``augment``: the nominal ones when
    the space searches them (their first choice). ``resize``: squash, pad or crop (default: DataConfig's)."""

    dataset: str
    resolution: int | None = None
    classes: int | None = None
    augment: str | None = None
    resize: str | None = None
    labels_per_class: int | None = None  # few labels: the train split's cap per class

    @property
    def sizing_resolution(self) -> int:
        """The size the space is checked, sized and matched at: its resolution, or 32 px
        when the task leaves the resolution to the data."""
        return self.resolution or 32


@dataclass(frozen=True)
class Proxy:
    """Low-fidelity training settings applied to every trial."""

    epochs: int = 8
    # at least this many optimiser steps: a small data set gets more epochs
    min_steps: int = 0
    train_fraction: float = 1.0
    batch_size: int = 64
    # the nominal values when the space searches them: a choice's first value, a range's
    # centre (baselines train with these)
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0
    # how weights start (TrainConfig.init); the last BN of every residual branch starts at
    # zero, so deep trees start shallow
    init: str = TrainConfig.init
    zero_init_residual: bool = True
    # how batches are drawn (auto: class-balanced on imbalanced data; see TrainConfig)
    sampling: str = TrainConfig.sampling
    # every trial starts from these weights where its tensors match them (``dla34``,
    # ``timm:dla34``, a file or a URL: see dla_nas.weights.sources), on ImageNet-normalised
    # inputs; the fine-tuning settings then default to the trainer's ``fine_tuning``
    pretrained: str | None = None
    backbone_lr_mult: float = 1.0
    freeze_epochs: int = 0
    freeze_bn: bool = False

    @classmethod
    def parse(cls, raw: Any, recipe: list[tuple[str, Spec]] | None = None,
              fine_tune: bool = False) -> Proxy:
        """A space's ``proxy`` mapping, with lr, weight decay and the fine-tuning settings at
        their nominal values when they are searched (their specs are appended to
        ``recipe``). Pretrained weights (``pretrained``, or ``fine_tune``: a backbone's own)
        make the trainer's ``fine_tuning`` the defaults."""
        raw = _nominal(raw, "proxy", {"lr": number(0, low_open=True), "weight_decay": number(0),
                                      "backbone_lr_mult": number(0, low_open=True),
                                      "freeze_epochs": integer(0)},
                       [] if recipe is None else recipe)
        if isinstance(raw, dict) and (raw.get("pretrained") is not None or fine_tune):
            epochs = raw.get("epochs", cls.epochs)
            raw = {**fine_tuning(epochs if type(epochs) is int else cls.epochs), **raw}
        return _dataclass(cls, raw, "proxy")

    def train_config(self, **settings: Any) -> TrainConfig:
        """The trainer's config of this proxy; ``settings``: device, threads, ..."""
        return TrainConfig(epochs=self.epochs, min_steps=self.min_steps,
                           batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, seed=self.seed,
                           init=self.init, zero_init_residual=self.zero_init_residual,
                           sampling=self.sampling,
                           backbone_lr_mult=self.backbone_lr_mult,
                           freeze_epochs=self.freeze_epochs, freeze_bn=self.freeze_bn,
                           **settings)


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
    # a DLA space's genome section (None in a backbone space)
    block: Spec | None = None
    cardinality: Spec | None = None
    width_multiplier: Spec | None = None
    channel_divisor: int = 8
    stem_kernel: Spec | None = None
    stem_stride: Spec | None = None
    stem_channels: Spec | None = None
    stem_pool: Spec | None = None
    stem_levels: tuple[dict[str, Spec], ...] = ()
    num_stages: Spec | None = None
    stages: tuple[dict[str, Spec], ...] = ()
    baselines: tuple[str, ...] = ()
    recipe: tuple[tuple[str, Spec], ...] = ()  # the searched training settings (RECIPE)
    # a backbone space's section (``backbone_space``): aggregation over an existing network
    backbone: BackboneSpace | None = None
    # a dense DLA space's ``decoder`` section: the head over each drawn genome's levels
    decoder: HeadSpace | None = None

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
                                       "constraints", "genome", "backbone", "decoder",
                                       "baselines"},
                      required={"task"})
        if ("genome" in raw) == ("backbone" in raw):
            raise SpaceError("space: exactly one of genome (a DLA space) or backbone (over an "
                             "existing network) is required")
        backbone = BackboneSpace.parse(raw["backbone"]) if "backbone" in raw else None
        if "decoder" in raw and backbone is not None:
            raise SpaceError("decoder: not allowed in a backbone space (its backbone section "
                             "has the head's fields)")
        decoder = (HeadSpace.parse(mapping(raw["decoder"], "decoder", set(HEAD_FIELDS)),
                                   "decoder") if "decoder" in raw else None)
        dense = decoder is not None or backbone is not None and backbone.task == "dense"
        recipe: list[tuple[str, Spec]] = []
        task_raw = _nominal(raw["task"], "task", {"resolution": optional(integer(8)),
                                                  "augment": optional(_augment_rule)}, recipe)
        task = _dataclass(Task, task_raw, "task")
        if not isinstance(task.dataset, str):
            raise SpaceError(f"task.dataset: {task.dataset!r} is not allowed (digits, cifar10, "
                             "cifar100, folder:PATH or seg:PATH)")
        if task.resize is not None:
            check("task.resize", task.resize, one_of(RESIZE_MODES), SpaceError)
        check("task.labels_per_class", task.labels_per_class, optional(integer(1)), SpaceError)
        proxy = Proxy.parse(raw.get("proxy", {}), recipe,
                            fine_tune=backbone is not None and backbone.weights == "imagenet")
        check("proxy.train_fraction", proxy.train_fraction, number(0, 1, low_open=True),
              SpaceError)
        searched = [(key, v) for key, spec in recipe if key in TRAINING for v in spec.values()]
        try:  # the trainer's own rules check the rest, and every searched value (its ends)
            proxy.train_config()
            for key, value in searched:
                dataclasses.replace(proxy, **{key: value}).train_config()
        except TrainError as exc:
            raise SpaceError(f"proxy.{exc}") from None
        try:
            if proxy.pretrained is not None:
                parse_source(str(proxy.pretrained))  # the form only: nothing is fetched yet
        except WeightsError as exc:
            raise SpaceError(f"proxy.pretrained: {str(exc).removeprefix('pretrained: ')}") \
                from None
        objectives = _objectives(raw.get("objectives", {"val_acc": "maximize", "macs": "minimize"}))
        if "val_miou" in dict(objectives) and not dense:
            raise SpaceError("objectives.val_miou: not allowed in a space of classifiers (a "
                             "dense space has it: a backbone section with task: dense, or a "
                             "genome section with a decoder)")
        constraints = dict(mapping(raw.get("constraints", {}), "constraints", set(CONSTRAINTS)))
        for key, value in constraints.items():
            check(f"constraints.{key}", value, number(0, low_open=True), SpaceError)
        common = dict(name=_run_name(raw.get("name"), path), path=path, raw=raw,
                      task=task, proxy=proxy, objectives=objectives, constraints=constraints,
                      recipe=tuple(recipe))
        if backbone is not None:
            names = raw.get("baselines", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise SpaceError(f"baselines: {names!r} is not allowed (a list of names)")
            space = cls(**common, backbone=backbone, baselines=tuple(names))
        else:
            space = cls._dla(raw, {**common, "decoder": decoder})
        space._self_check()
        for name in space.baselines:
            try:
                space.find(space.hand_design(name))
            except Unreachable as exc:
                raise SpaceError(f"baselines: {name} is not in this space ({exc})") from None
        return space

    @classmethod
    def _dla(cls, raw: Mapping[str, Any], common: dict[str, Any]) -> SearchSpace:
        """A DLA space: its ``genome`` section and zoo baselines."""
        g = mapping(raw["genome"], "genome",
                     {"block", "cardinality", "width_multiplier", "channel_divisor", "stem",
                      "num_stages", "stages"}, required={"stem", "stages"})
        stem = mapping(g["stem"], "genome.stem", {"kernel", "stride", "channels", "pool",
                                                  "levels"})
        if not isinstance(stem.get("levels", []), list):
            raise SpaceError("genome.stem.levels: a list of level specs is required")
        stem_levels = tuple(
            field_specs(lv, f"genome.stem.levels[{i}]", STEM_LEVEL_CHECKS, {"convs": 1, "stride": 1})
            for i, lv in enumerate(stem.get("levels", [])))
        if "channels" not in stem and all(0 in lv["convs"].values() for lv in stem_levels):
            raise SpaceError("genome.stem.channels: required when every stem level may be left "
                             "out (convs 0): the base conv's width")
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
        return cls(
            **common,
            block=parse_spec(g.get("block", "basic"), "genome.block", one_of(BLOCKS)),
            cardinality=parse_spec(g.get("cardinality", 32), "genome.cardinality", integer(1)),
            width_multiplier=parse_spec(g.get("width_multiplier", 1.0), "genome.width_multiplier",
                                   number(0, low_open=True)),
            channel_divisor=divisor,
            stem_kernel=parse_spec(stem.get("kernel", 3), "genome.stem.kernel", odd),
            stem_stride=parse_spec(stem.get("stride", 1), "genome.stem.stride", one_of(STRIDES)),
            stem_channels=(parse_spec(stem["channels"], "genome.stem.channels", integer(1))
                           if "channels" in stem else None),
            stem_pool=parse_spec(stem.get("pool", False), "genome.stem.pool", boolean),
            stem_levels=stem_levels,
            num_stages=num_stages,
            stages=stages,
            baselines=_baseline_names(raw.get("baselines", [])),
        )

    def hand_design(self, name: str) -> AnyGenome:
        """The genome of one of ``baselines``: a zoo network (in a dense DLA space, an FCN
        over its deepest level), or in a backbone space the network as it is (``own``) or
        cut (``own_cut<N>``)."""
        if self.backbone is not None:
            return self.backbone.hand_design(name)
        if self.decoder is not None:
            return BackboneGenome(zoo.load(name), task="dense", name=name)
        return zoo.load(name)

    def baseline(self, name: str) -> AnyGenome:
        """The genome of a ``--baselines`` name: in a backbone space its own hand designs
        (``own``, ``own_cut<N>``) by name; else any zoo network or U-Net as it is
        (``arch.baselines.baseline_genome``), whose task the data must have."""
        if self.backbone is not None and is_own_hand_design(name):
            return self.backbone.hand_design(name)
        return baseline_genome(name)

    @property
    def imagenet_inputs(self) -> bool:
        """Whether trials start from ImageNet weights, so their inputs are normalised so."""
        return self.proxy.pretrained is not None or (
            self.backbone is not None and self.backbone.weights == "imagenet")

    def _self_check(self) -> None:
        """Every sampled configuration must give a valid genome; check a few at random."""
        import random

        rng = random.Random(0)
        for _ in range(20):
            self.sample(RandomSuggester(rng), self.task.sizing_resolution)

    def data_config(self, data_dir: str | None = None, *, train_fraction: float | None = None,
                    augment: Augment | None = None, resolution: int | None = None) -> DataConfig:
        """The data's config of this space's task (``train_fraction``: default the proxy's;
        ``augment``: default the task's, else the dataset's own; ``resolution``: default the
        task's)."""
        if augment is None and self.task.augment:
            augment = Augment.for_dataset(self.task.augment, self.task.dataset)
        fraction = self.proxy.train_fraction if train_fraction is None else train_fraction
        resize = {"resize": self.task.resize} if self.task.resize else {}
        return DataConfig(self.task.dataset, resolution=resolution or self.task.resolution,
                          data_dir=data_dir, augment=augment, train_fraction=fraction,
                          labels_per_class=self.task.labels_per_class, **resize)

    @classmethod
    def of_run(cls, info: Mapping[str, Any]) -> "SearchSpace":
        """The resolved space a run was made with (``--dataset`` and ``--resolution``
        applied), as its run.yaml keeps it."""
        space = cls.from_dict(info["space"], info.get("space_path", "<run.yaml>"))
        return dataclasses.replace(space, proxy=kept_init(space.proxy, info["space"].get("proxy")))

    def with_proxy(self, **settings: Any) -> SearchSpace:
        """This space with ``settings`` written into its proxy."""
        raw = json.loads(json.dumps(self.raw, default=str))
        raw["proxy"] = {**(raw.get("proxy") or {}), **settings}
        return SearchSpace.from_dict(raw, self.path)

    def with_task(self, dataset: str | None = None, resolution: int | None = None, *,
                  augment: str | None = None, resize: str | None = None,
                  sampling: str | None = None,
                  labels_per_class: int | None = None) -> SearchSpace:
        """This space searched with the task and sampling that ``search``'s flags set
        (``--dataset``, ``--resolution``, ``--augment``, ``--resize``, ``--sampling``); a new
        dataset drops ``classes``, which the new data decides."""
        task = {k: v for k, v in (("dataset", dataset), ("resolution", resolution),
                                  ("augment", augment), ("resize", resize),
                                  ("labels_per_class", labels_per_class)) if v is not None}
        space = self.with_proxy(sampling=sampling) if sampling is not None else self
        if not task:
            return space
        raw = json.loads(json.dumps(space.raw, default=str))
        raw["task"] = {k: v for k, v in raw["task"].items()
                       if not (k == "classes" and dataset is not None)} | task
        return SearchSpace.from_dict(raw, self.path)

    @property
    def dense(self) -> bool:
        """Whether the space's networks give a class a pixel (a backbone section's task, or
        a DLA space's decoder)."""
        return self.decoder is not None or (self.backbone is not None
                                            and self.backbone.task == "dense")

    def ranked_by(self, metric: str) -> SearchSpace:
        """This space with a ``val_acc`` objective replaced by ``metric``: what a search on
        imbalanced data ranks by (``val_balanced_acc``: plain accuracy there mostly measures
        the largest class), or on masks (``val_miou``: pixel accuracy mostly measures the
        background)."""
        metrics = dict(self.objectives)
        if "val_acc" not in metrics or metric in metrics:
            return self
        raw = json.loads(json.dumps(self.raw, default=str))
        raw["objectives"] = {(metric if m == "val_acc" else m): d for m, d in self.objectives}
        return SearchSpace.from_dict(raw, self.path)

    def constraint_values(self, value: Callable[[str], float | None]) -> dict[str, float]:
        """Each constraint as ``value / limit - 1`` (feasible when <= 0), for the metrics
        that ``value(metric)`` knows (None: not measured, left out)."""
        out = {}
        for key, limit in self.constraints.items():
            measured = value(CONSTRAINTS[key])
            if measured is not None:
                out[key] = measured / limit - 1.0
        return out

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
    def sample_trial(self, trial: Suggester, resolution: int
                     ) -> tuple[Genome, list[str], Recipe]:
        """A genome (see ``sample``), its repairs, and the trial's recipe: the searched
        training settings, drawn with it. The resolution is drawn first, because the genome's
        strides are fitted to it; ``resolution`` is the one to use when it is not searched."""
        specs = dict(self.recipe)
        recipe: dict[str, Any] = {}
        if "resolution" in specs:
            recipe["resolution"] = resolution = specs["resolution"].draw(trial, "task.resolution")
        genome, repairs = self.sample(trial, resolution)
        for key, name in RECIPE[1:]:
            if key in specs:
                recipe[key] = specs[key].draw(trial, name)
        return genome, repairs, Recipe(**recipe)

    def sample(self, trial: Suggester, resolution: int) -> tuple[Genome, list[str]]:
        """A valid Genome for this trial, and a note for every deterministic repair.

        Repairs: a stride-2 step that would receive a map smaller than 2x2 at ``resolution``
        becomes stride 1; bottleneck(x) widths are raised to the nearest width the block
        allows. IDA edges are offered only from stages ``j <= i - 2``. A backbone space
        draws its own section (``BackboneSpace.sample``); a dense DLA space draws the genome,
        then its decoder over the genome's levels (a ``BackboneGenome`` with the genome as its
        backbone)."""
        if self.backbone is not None:
            return self.backbone.sample(trial)
        genome, repairs = self._sample_dla(trial, resolution)
        if self.decoder is None:
            return genome, repairs
        dense = BackboneGenome(genome, task="dense")
        cut, head = self.decoder.draw(trial, dense.level_count, repairs)
        try:
            return dataclasses.replace(dense, cut=cut, head=head).validate(), repairs
        except GenomeError as exc:  # a genome with no level to decode: the space's fault
            raise SpaceError(f"decoder: a sampled combination is invalid ({exc})") from None

    def _sample_dla(self, trial: Suggester, resolution: int) -> tuple[Genome, list[str]]:
        repairs: list[str] = []
        block = self.block.draw(trial, "block")
        cardinality = self.cardinality.draw(trial, "cardinality")
        mult = self.width_multiplier.draw(trial, "width_multiplier")
        stem: dict[str, Any] = {}
        size, stem["stride"] = _fit_stride(resolution, self.stem_stride.draw(trial, "stem.stride"),
                                           "stem.stride", repairs)
        if self.stem_channels is not None:
            stem["channels"] = self._width(self.stem_channels.draw(trial, "stem.channels"), mult)
        if self.stem_pool.draw(trial, "stem.pool"):
            size, pool = _fit_stride(size, 2, "stem.pool", repairs)
            stem["pool"] = pool == 2
        stem["levels"] = []
        for i, spec in enumerate(self.stem_levels):
            where = f"stem.levels[{i}]"
            lv = {k: s.draw(trial, f"{where}.{k}") for k, s in spec.items()}
            if lv["convs"] == 0:  # this level is left out
                continue
            lv["channels"] = self._width(lv["channels"], mult)
            size, lv["stride"] = _fit_stride(size, lv["stride"], f"{where}.stride", repairs)
            stem["levels"].append(lv)
        n = self.num_stages.draw(trial, "num_stages")
        stages = []
        for i in range(n):
            st, size = self._sample_stage(trial, i, size, block, cardinality, mult, repairs)
            stages.append(st)
        stem["kernel"] = self.stem_kernel.draw(trial, "stem.kernel")  # last: see _sample_stage
        try:
            genome = Genome.from_dict({"block": block, "cardinality": cardinality, "stem": stem,
                                       "stages": stages})
        except GenomeError as exc:  # a combination no repair covers: the space's fault
            raise SpaceError(f"genome: a sampled combination is invalid ({exc})") from None
        return genome, repairs

    def _sample_stage(self, trial: Suggester, i: int, size: int, block: str, cardinality: int,
                      mult: float, repairs: list[str]) -> tuple[dict, int]:
        """Stage ``i`` as plain data, drawing only the fields it uses; and the map size after
        it. The draw order is fixed (the committed reference runs were drawn in it), so a seeded
        search replays."""
        where, spec = f"stages[{i}]", self.stages[i]

        def draw(key: str) -> Any:
            return spec[key].draw(trial, f"{where}.{key}")

        st = {"channels": draw("channels"), "aggregation": draw("aggregation")}
        tree = st["aggregation"] == "tree"
        st.update({"depth": draw("depth"), "fan_in": draw("fan_in")} if tree
                  else {"blocks": draw("blocks")})
        st["stride"] = draw("stride")
        level_root = draw("level_root")
        if level_root is not None:
            st["level_root"] = level_root
        elif not tree:
            level_root = False
        if tree:
            st.update(root_kernel=draw("root_kernel"), root_residual=draw("root_residual"))
        st["ida_from"] = [j for j in range(i - 1)
                          if spec["ida_from"].draw(trial, f"{where}.ida_from.{j}")]
        if not tree and (level_root or st["ida_from"]):  # a chain's root: something joins it
            st.update(root_kernel=draw("root_kernel"), root_residual=draw("root_residual"))
        st["channels"] = _fit_block_width(self._width(st["channels"], mult), block, cardinality,
                                          f"{where}.channels", repairs)
        size, st["stride"] = _fit_stride(size, st["stride"], f"{where}.stride", repairs)
        if st["stride"] == 2:
            st["downsample"] = draw("downsample")
        return st, size

    def find(self, genome: Genome, resolution: int | None = None) -> dict[str, Any]:
        """Parameter values with which ``sample`` builds ``genome`` (the same canonical hash);
        raise ``Unreachable`` saying which value the space does not offer."""
        if self.backbone is not None:
            if not isinstance(genome, BackboneGenome):
                raise Unreachable("a DLA genome, the space gives a backbone's")
            return self.backbone.find(genome)
        resolution = resolution or self.task.sizing_resolution
        if self.decoder is not None:
            if not (isinstance(genome, BackboneGenome) and isinstance(genome.backbone, Genome)
                    and genome.task == "dense" and genome.weights == "none"):
                raise Unreachable("not a DLA genome with a dense head, which the space gives")
            values = self._find_dla(genome.backbone, resolution)
            return self.decoder.find(genome, lambda trial: self.sample(trial, resolution)[0],
                                     values)
        if not isinstance(genome, Genome):
            raise Unreachable("a backbone genome, the space gives DLA genomes")
        return self._find_dla(genome, resolution)

    def _find_dla(self, genome: Genome, resolution: int) -> dict[str, Any]:
        target = genome.canonical_hash()
        slots, k = range(len(self.stem_levels)), len(genome.stem.levels)
        reason = f"it has {k} stem levels, the space at most {len(slots)}"
        for mult in self.width_multiplier.values():
            for placed in itertools.combinations(slots, k):  # which stem slots the levels fill
                values: dict[str, Any] = {}
                suggester = TargetSuggester(
                    lambda name, placed=placed: _field_value(genome, name, placed),
                    lambda name, choice, value, mult=mult: self._matches(genome, name, choice,
                                                                         value, mult))
                recorder = Recorder(suggester, values, {"width_multiplier": mult})
                try:
                    sampled, _ = self._sample_dla(recorder, resolution)
                except Unreachable as exc:
                    reason = str(exc)
                    continue
                if sampled.canonical_hash() == target:
                    return values
                reason = _first_difference(genome.canonical().to_dict(),
                                           sampled.canonical().to_dict())
        raise Unreachable(reason)

    def _matches(self, genome: Genome, name: str, choice: Any, value: Any, mult: float) -> bool:
        """Whether drawing ``choice`` for parameter ``name`` gives ``value`` in ``genome`` (as
        ``sample`` turns it into a field: widths scaled and fitted to the block, a None
        level_root the aggregation's default)."""
        if value is None:  # any choice will do
            return True
        if name.endswith("channels"):
            width = self._width(choice, mult)
            if name.startswith("stages["):
                width = _fit_block_width(width, genome.block, genome.cardinality, name, [])
            return width == value
        if name.endswith("level_root") and choice is None:
            return value == genome.stages[int(name[7:name.index("]")])].is_tree
        return choice == value

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
        if self.backbone is not None:
            return self.backbone.count(), True
        specs = self._named_specs()
        total = math.prod(len(s.values()) for _, s in specs)  # upper bound over num_stages
        if total > ENUMERATION_LIMIT:
            return self._configurations(), False
        names = [n for n, _ in specs]
        hashes = set()
        for combo in itertools.product(*(s.values() for _, s in specs)):
            genome, _ = self.sample(FixedSuggester(dict(zip(names, combo))),
                                    self.task.sizing_resolution)
            hashes.add(genome.canonical_hash())
        return len(hashes), True

    def _named_specs(self) -> list[tuple[str, Spec]]:
        """Every spec with its parameter name, for all stage slots up to the maximum."""
        out = [("block", self.block), ("cardinality", self.cardinality),
               ("width_multiplier", self.width_multiplier), ("stem.kernel", self.stem_kernel),
               ("stem.stride", self.stem_stride), ("stem.pool", self.stem_pool),
               ("num_stages", self.num_stages)]
        if self.stem_channels is not None:
            out.append(("stem.channels", self.stem_channels))
        for i, spec in enumerate(self.stem_levels):
            out += [(f"stem.levels[{i}].{k}", s) for k, s in spec.items()]
        for i, spec in enumerate(self.stages):
            out += [(f"stages[{i}].{k}", s) for k, s in spec.items() if k != "ida_from"]
            out += [(f"stages[{i}].ida_from.{j}", spec["ida_from"]) for j in range(i - 1)]
        if self.decoder is not None:
            out += [(f"decoder.{k}", s) for k, s in self.decoder.specs]
        return out

    def _configurations(self) -> int:
        """Configurations summed over the number of stages (stages beyond it are not drawn)."""
        fixed = [s for n, s in self._named_specs() if not n.startswith("stages[") and n != "num_stages"]
        head = math.prod(len(s.values()) for s in fixed)
        per_stage = [_stage_configurations(spec, i) for i, spec in enumerate(self.stages)]
        return head * sum(math.prod(per_stage[:n]) for n in self.num_stages.values())


# ---- helpers ---------------------------------------------------------------------------------
def _stage_configurations(spec: dict[str, Spec], i: int) -> int:
    """Configurations of stage ``i``, counting each field only where it is drawn: depth and
    fan-in for a tree, blocks for a chain, downsample at stride 2 (an upper bound still: a
    chain without a root draws no root fields)."""
    def n(key: str) -> int:
        return len(spec[key].values())

    shared = (n("channels") * n("level_root") * n("root_kernel") * n("root_residual")
              * n("ida_from") ** max(0, i - 1))
    kinds = sum(n("depth") * n("fan_in") if a == "tree" else n("blocks")
                for a in spec["aggregation"].values())
    strides = sum(n("downsample") if s == 2 else 1 for s in spec["stride"].values())
    return shared * kinds * strides


def _field_value(genome: Genome, name: str, placed: tuple[int, ...]) -> Any:
    """The value of the sample parameter ``name`` (``stages[1].depth``, ``stem.levels[0].convs``
    ...) in ``genome``, whose stem levels fill the space's slots ``placed``; None where any
    value will do (a stem level that is left out)."""
    if name == "num_stages":
        return len(genome.stages)
    if name.startswith("stem.levels["):
        slot, key = int(name[12:name.index("]")]), name.rsplit(".", 1)[1]
        if slot not in placed:
            return 0 if key == "convs" else None
        return getattr(genome.stem.levels[placed.index(slot)], key)
    if name.startswith("stem."):
        key = name[5:]
        return genome.stem.width if key == "channels" else getattr(genome.stem, key)
    if name.startswith("stages["):
        i, rest = int(name[7:name.index("]")]), name[name.index("]") + 2:]
        stage = genome.stages[i] if i < len(genome.stages) else None
        if stage is None:
            return None
        if rest.startswith("ida_from."):
            return int(rest[9:]) in stage.ida_from
        return getattr(stage, rest)
    return getattr(genome, name)


def _nominal(raw: Any, where: str, rules: dict[str, Any], recipe: list[tuple[str, Spec]]
             ) -> dict[str, Any]:
    """A copy of the ``task`` or ``proxy`` mapping with each searchable field (``rules``) at
    its nominal value; a field given as a choice or range is appended to ``recipe``."""
    out = dict(mapping(raw, where, set(raw) if isinstance(raw, Mapping) else set()))
    for key, rule in rules.items():
        if key not in out:
            continue
        spec = parse_spec(out[key], f"{where}.{key}", rule, floats=key != "resolution")
        if isinstance(spec, Fixed):
            continue
        if isinstance(spec, IntRange):
            raise SpaceError(f"{where}.{key}: a range is not allowed (a value or a choice list)")
        recipe.append((key, spec))
        out[key] = spec.middle if isinstance(spec, FloatRange) else spec.values()[0]
    return out


def _first_difference(want: Any, got: Any, where: str = "") -> str:
    """'stages[1].blocks 3, the space gives 1': the first field where two genome dicts differ."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                return _first_difference(want.get(key), got.get(key),
                                         f"{where}.{key}" if where else key)
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                return _first_difference(a, b, f"{where}[{i}]")
    return f"{where} {want!r}, the space gives {got!r}"


def _baseline_names(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise SpaceError(f"baselines: {raw!r} is not allowed (a list of zoo names)")
    for name in raw:
        try:
            known = zoo.find(name) is not None
        except GenomeError as exc:
            raise SpaceError(f"baselines: {exc}") from None
        if not known:
            raise SpaceError(f"baselines: {name!r} is not a zoo name (allowed: "
                             f"{', '.join(zoo.names())}, {zoo.PATTERNS})")
    return tuple(raw)


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


def _run_name(name: Any, path: str) -> str:
    """The space's ``name``, which names its default run folder (``results/<name>``): letters,
    digits, ``_``, ``.`` and ``-``, not a dot first; without one, the file's stem made so."""
    if name is None:
        return safe_name(Path(path).stem, 60).lstrip(".") or "space"
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name)):
        raise SpaceError(f"name: {name!r} is not allowed (letters, digits, _ . -, not a dot "
                         "first: it names the run folder results/<name>)")
    return name
