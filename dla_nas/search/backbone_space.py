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
from typing import Any, NoReturn

from ..arch.backbone_genome import (
    HEAD_AGGREGATIONS,
    LITE0,
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
class BackboneSpace:
    """The parsed ``backbone:`` section: a fixed network and weights, searched head."""

    name: str
    weights: str
    levels_total: int  # the network's levels (found by building it once)
    specs: tuple[tuple[str, Spec], ...]
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
        specs = tuple((key, parse_spec(raw.get(key, DEFAULTS[key]), f"backbone.{key}", rule))
                      for key, rule in FIELDS.items())
        space = cls(raw["name"], weights, _level_count(genome), specs, task)
        check("backbone.cut", max(space.spec("cut").values()),
              integer(0, space.levels_total - 1), SpaceError)
        return space

    def spec(self, key: str) -> Spec:
        return dict(self.specs)[key]

    def sample(self, trial: Suggester) -> tuple[BackboneGenome, list[str]]:
        """A valid genome for this trial, and a note for every repair."""
        repairs: list[str] = []
        cut = self.spec("cut").draw(trial, "backbone.cut")
        head: dict[str, Any] = {"aggregation": self.spec("aggregation").draw(
            trial, "backbone.aggregation")}
        kept = self.levels_total - cut
        if head["aggregation"] != "none":
            head.update({key: self.spec(key).draw(trial, f"backbone.{key}")
                         for key in NODE_FIELDS})
            if head["aggregation"] == "dla_up":
                head["upsample"] = self.spec("upsample").draw(trial, "backbone.upsample")
            if kept < 2:
                repairs.append(f"backbone.aggregation: {head['aggregation']} -> none (cut {cut}"
                               " keeps 1 level)")
                head = {"aggregation": "none"}
            elif head["levels"] > kept:
                repairs.append(f"backbone.levels: {head['levels']} -> {kept} (the levels kept "
                               f"after cut {cut})")
                head["levels"] = kept
        head.setdefault("levels", 1)
        genome = BackboneGenome(self.name, self.weights, cut, Head(**head), self.task)
        return genome.validate(), repairs

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
        target = genome.canonical_hash()
        for values in self._combinations():
            drawn: dict[str, Any] = {}
            sampled, _ = self.sample(Recorder(FixedSuggester(values), drawn))
            if sampled.canonical_hash() == target:
                return drawn
        return _unreachable(genome, self)

    def count(self) -> int:
        """Distinct genomes of this section."""
        return len({self.sample(FixedSuggester(v))[0].canonical_hash()
                    for v in self._combinations()})

    def _combinations(self):
        names = [f"backbone.{key}" for key, _ in self.specs]
        for combo in itertools.product(*(s.values() for _, s in self.specs)):
            yield dict(zip(names, combo))


def is_own_hand_design(name: str) -> bool:
    """Whether ``name`` is ``own`` or ``own_cut<N>``."""
    return _HAND.fullmatch(name) is not None


def _unreachable(genome: BackboneGenome, space: BackboneSpace) -> NoReturn:
    """Raise ``Unreachable`` naming the first value of ``genome`` the space does not offer."""
    if (genome.backbone, genome.weights) != (space.name, space.weights):
        raise Unreachable(f"backbone {genome.backbone} ({genome.weights} weights), the space "
                          f"gives {space.name} ({space.weights})")
    if genome.task != space.task:
        raise Unreachable(f"task {genome.task}, the space gives {space.task}")
    for key, spec in space.specs:
        value = genome.cut if key == "cut" else getattr(genome.head, key)
        used = key in ("cut", "aggregation") or genome.head.aggregation != "none" and (
            key != "upsample" or genome.head.aggregation == "dla_up")
        if used and value not in spec.values():
            raise Unreachable(f"backbone.{key} {value!r}, the space gives {spec.values()}")
    raise Unreachable("no draw of the space builds it")


def _level_count(genome: BackboneGenome) -> int:
    """How many levels the network has: lite0's are known; a zoo network is built once."""
    if genome.backbone == LITE0:
        return genome.level_count
    from ..backbones.build import network_taps  # builds the network

    try:
        return len(network_taps(genome, in_chans=3)[1])
    except BackboneError as exc:
        raise SpaceError(f"backbone.name: {exc}") from None

