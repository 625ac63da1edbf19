"""The ``backbone:`` section of a search space: aggregation over an existing network.

```yaml
backbone:
  name: efficientnet_lite0      # fixed: the network (BackboneGenome.backbone)
  weights: imagenet             # fixed: imagenet or none
  task: classify                # fixed: classify or dense (masks; own is then an FCN)
  cut: [0, 1, 2]                # searched like any genome field: value, choice list or range
  aggregation: [none, ida]      # also tree, dla_up (dla_nas.backbones.attach)
  levels: [2, 3]                # not for none: the deepest levels kept that are aggregated
  width: [32, 64]               # not for none
  kernel: [1, 3]
  residual: [false, true]
  upsample: [deconv, bilinear]  # dla_up only: learnt (from bilinear) or fixed
baselines: [own, own_cut1]      # hand designs: the network as it is, and cut
```

A trial draws ``cut`` and ``aggregation``, and the node's fields only for an aggregation
other than ``none``. Repairs, each reported: ``levels`` above the levels kept becomes that
many; an aggregation with one level kept becomes ``none``. A tree over two levels is IDA
(one hash).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from ..arch.backbone_genome import (
    HEAD_AGGREGATIONS,
    MAX_WIDTH,
    NODE_KERNELS,
    TASKS,
    UPSAMPLES,
    BackboneGenome,
    Head,
)
from ..checks import boolean, check, integer, one_of
from ..errors import BackboneError, GenomeError, SpaceError
from .specs import FixedSuggester, Recorder, Spec, Suggester, Unreachable, mapping, parse_spec

FIELDS = {"cut": integer(0), "aggregation": one_of(HEAD_AGGREGATIONS), "levels": integer(2),
          "width": integer(1, MAX_WIDTH), "kernel": one_of(NODE_KERNELS), "residual": boolean,
          "upsample": one_of(UPSAMPLES)}
DEFAULTS = {"cut": 0, "aggregation": "none", "levels": 2, "width": 64, "kernel": 3,
            "residual": False, "upsample": "deconv"}
NODE_FIELDS = ("levels", "width", "kernel", "residual")
_HAND = re.compile(r"own(?:_cut(\d+))?")
HAND_NAMES = "own (the network as it is) or own_cut<N> (its deepest N levels cut off)"


@dataclass(frozen=True)
class HeadSpace:
    """The searched head fields (``FIELDS``) of a section: ``backbone:`` over a fixed
    network, or a DLA space's ``decoder:`` over the genome each trial draws. ``prefix``
    names the section in parameter names and messages."""

    prefix: str
    specs: tuple[tuple[str, Spec], ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any], prefix: str) -> "HeadSpace":
        return cls(prefix, tuple((key, parse_spec(raw.get(key, DEFAULTS[key]),
                                                  f"{prefix}.{key}", rule))
                                 for key, rule in FIELDS.items()))

    def spec(self, key: str) -> Spec:
        return dict(self.specs)[key]

    def draw(self, trial: Suggester, levels_total: int, repairs: list[str]
             ) -> tuple[int, Head]:
        """A cut and a head over a network of ``levels_total`` levels; a note in
        ``repairs`` for every repair."""
        def draw(key: str) -> Any:
            return self.spec(key).draw(trial, f"{self.prefix}.{key}")

        cut = draw("cut")
        if cut >= levels_total > 0:  # a drawn genome's levels (a fixed network's are checked)
            repairs.append(f"{self.prefix}.cut: {cut} -> {levels_total - 1} (the network has "
                           f"{levels_total} levels)")
            cut = levels_total - 1
        head: dict[str, Any] = {"aggregation": draw("aggregation")}
        kept = levels_total - cut
        if head["aggregation"] != "none":
            head.update({key: draw(key) for key in NODE_FIELDS})
            if head["aggregation"] == "dla_up":
                head["upsample"] = draw("upsample")
            if kept < 2:
                repairs.append(f"{self.prefix}.aggregation: {head['aggregation']} -> none (cut "
                               f"{cut} keeps 1 level)")
                head = {"aggregation": "none"}
            elif head["levels"] > kept:
                repairs.append(f"{self.prefix}.levels: {head['levels']} -> {kept} (the levels "
                               f"kept after cut {cut})")
                head["levels"] = kept
        head.setdefault("levels", 1)
        return cut, Head(**head)

    def find(self, genome: BackboneGenome, sample: Callable[[Suggester], BackboneGenome],
             fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Parameter values with which ``sample`` (drawing ``fixed`` values first, then this
        section's) builds ``genome``; ``Unreachable`` saying which value it does not offer."""
        target = genome.canonical_hash()
        for values in self.combinations():
            drawn: dict[str, Any] = {}
            sampled = sample(Recorder(FixedSuggester({**(fixed or {}), **values}), drawn))
            if sampled.canonical_hash() == target:
                return drawn
        for key, spec in self.specs:
            value = genome.cut if key == "cut" else getattr(genome.head, key)
            used = key in ("cut", "aggregation") or genome.head.aggregation != "none" and (
                key != "upsample" or genome.head.aggregation == "dla_up")
            if used and value not in spec.values():
                raise Unreachable(f"{self.prefix}.{key} {value!r}, the space gives "
                                  f"{spec.values()}")
        raise Unreachable("no draw of the space builds it")

    def combinations(self) -> Iterator[dict[str, Any]]:
        names = [f"{self.prefix}.{key}" for key, _ in self.specs]
        for combo in itertools.product(*(s.values() for _, s in self.specs)):
            yield dict(zip(names, combo))


@dataclass(frozen=True)
class BackboneSpace:
    """The parsed ``backbone:`` section: a fixed network and weights, searched head."""

    name: str
    weights: str
    levels_total: int  # the network's levels (found by building it once)
    head: HeadSpace
    task: str = "classify"

    @classmethod
    def parse(cls, raw: Any) -> "BackboneSpace":
        raw = mapping(raw, "backbone", {"name", "weights", "task", *FIELDS}, required={"name"})
        weights = raw.get("weights", "none")
        task = raw.get("task", "classify")
        check("backbone.task", task, one_of(TASKS), SpaceError)
        try:
            genome = BackboneGenome(raw["name"], weights)
            genome.validate()
        except GenomeError as exc:
            raise SpaceError(f"backbone.{str(exc).removeprefix('backbone: ')}") from None
        space = cls(raw["name"], weights, _level_count(genome), HeadSpace.parse(raw, "backbone"),
                    task)
        check("backbone.cut", max(space.head.spec("cut").values()),
              integer(0, space.levels_total - 1), SpaceError)
        return space

    def sample(self, trial: Suggester) -> tuple[BackboneGenome, list[str]]:
        """A valid genome for this trial, and a note for every repair."""
        repairs: list[str] = []
        cut, head = self.head.draw(trial, self.levels_total, repairs)
        return BackboneGenome(self.name, self.weights, cut, head, self.task).validate(), repairs

    def hand_design(self, name: str) -> BackboneGenome:
        """``own`` or ``own_cut<N>``: the network as it is, or cut, with its own kind of head
        (the deepest level kept, pooled, and a linear classifier; for a dense task, an FCN
        over that level)."""
        found = _HAND.fullmatch(name)
        if found is None:
            raise SpaceError(f"baselines: {name!r} is not allowed in a backbone space "
                             f"({HAND_NAMES})")
        cut = int(found.group(1) or 0)
        if cut >= self.levels_total:
            raise SpaceError(f"baselines: {name!r} is not allowed ({self.name} has "
                             f"{self.levels_total} levels: cut 0 to {self.levels_total - 1})")
        return BackboneGenome(self.name, self.weights, cut, task=self.task, name=name)

    def find(self, genome: BackboneGenome) -> dict[str, Any]:
        """Parameter values with which ``sample`` builds ``genome``; ``Unreachable`` saying
        which value the space does not offer."""
        if (genome.backbone, genome.weights) != (self.name, self.weights):
            raise Unreachable(f"backbone {genome.label} ({genome.weights} weights), the space "
                              f"gives {self.name} ({self.weights})")
        if genome.task != self.task:
            raise Unreachable(f"task {genome.task}, the space gives {self.task}")
        return self.head.find(genome, lambda trial: self.sample(trial)[0])

    def count(self) -> int:
        """Distinct genomes of this section."""
        return len({self.sample(FixedSuggester(v))[0].canonical_hash()
                    for v in self.head.combinations()})


def is_own_hand_design(name: str) -> bool:
    """Whether ``name`` is ``own`` or ``own_cut<N>``."""
    return _HAND.fullmatch(name) is not None


def _level_count(genome: BackboneGenome) -> int:
    """How many levels the network has: known from the genome (lite0, zoo), else the
    network is built once (timm)."""
    if genome.level_count is not None:
        return genome.level_count
    from ..backbones.build import network_taps  # builds the network

    try:
        return len(network_taps(genome, in_chans=3)[1])
    except BackboneError as exc:
        raise SpaceError(f"backbone.name: {exc}") from None

