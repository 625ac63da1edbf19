"""Genome: a typed, frozen, serialisable description of one DLA network.

The meanings follow the DLA paper and its official code (see README, "Genome"):

- the **stem** is a base conv followed by plain conv levels (official: level0 and level1);
- each **stage** is one aggregation tree (official: level2..level5) with a depth, a fan-in,
  a width, a stride, an optional ``level_root`` link (the stage input joins the stage's root,
  the paper's IDA link), extra IDA edges from earlier stages, and the root's kernel and
  residual;
- one **block** type for the whole network (basic, bottleneck or bottleneckx with a
  cardinality).

``fan_in == 2`` everywhere reproduces the official networks exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..checks import boolean, check, integer, odd, one_of
from ..errors import GenomeError
from ..files import read_yaml

BLOCKS = ("basic", "bottleneck", "bottleneckx")
ROOT_KERNELS = (1, 3)
STRIDES = (1, 2)
MIN_INPUT = 8
# Limits that keep a genome buildable: a typo such as depth 40 or 10^9 channels is refused at
# once instead of allocating for hours. The official networks stay far below them (deepest
# tree 5, widest stage 1024, at most 48 blocks and ~54M weights in dla169), and so do the
# largest genomes of search_spaces/*.yaml (at most 74 blocks and ~125M weights).
MAX_CHANNELS = 4096
MAX_DEPTH = 8
MAX_FAN_IN = 8
MAX_CONVS = 8
MAX_STEM_KERNEL = 15
MAX_CARDINALITY = 256
MAX_BLOCKS = 1024  # residual blocks and stem convs in the whole network
MAX_WEIGHTS = 500_000_000  # conv weights, estimated from the genome before building
# Limits of an input (C, H, W) that a network is counted or built for
MAX_INPUT = 2048
MAX_IN_CHANS = 1024

_field = functools.partial(check, error=GenomeError)  # check one genome field


@dataclass(frozen=True)
class StemLevel:
    """A plain level of the stem: ``convs`` x (3x3 conv + BN + ReLU), the first with ``stride``."""

    channels: int
    convs: int = 1
    stride: int = 1


@dataclass(frozen=True)
class Stem:
    """Base conv (``kernel`` x ``kernel``, ``stride``) followed by the plain conv levels."""

    levels: tuple[StemLevel, ...]
    kernel: int = 7
    stride: int = 1


@dataclass(frozen=True)
class Stage:
    """One aggregation tree.

    ``ida_from`` lists earlier stages (0-based indices into ``Genome.stages``) whose outputs,
    max-pooled to this stage's resolution, join this stage's last root. The stage input
    itself joins through ``level_root``, so the immediately preceding stage is not allowed here.
    """

    channels: int
    depth: int = 1
    fan_in: int = 2
    stride: int = 2
    level_root: bool = True
    root_kernel: int = 1
    root_residual: bool = False
    ida_from: tuple[int, ...] = ()


@dataclass(frozen=True)
class Genome:
    """A whole DLA network: stem, stages and block type. ``name`` is a label, not structure."""

    stem: Stem
    stages: tuple[Stage, ...]
    block: str = "basic"
    cardinality: int = 32
    name: str = ""

    # ---- serialisation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genome":
        """Build and validate a genome from plain data (as read from YAML or JSON)."""
        genome = _parse_genome(data)
        genome.validate()
        return genome

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Genome":
        """Read a genome YAML file. An exported model config (with a ``genome:`` key) works too."""
        path = Path(path)
        data = read_yaml(path, GenomeError)
        if isinstance(data, dict) and isinstance(data.get("genome"), dict):
            data = data["genome"]
        try:
            return cls.from_dict(data)
        except GenomeError as exc:
            raise GenomeError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, ints, bools, strings) that ``from_dict`` reads back."""
        out = dataclasses.asdict(self)
        out["stem"]["levels"] = [dict(lv) for lv in out["stem"]["levels"]]
        out["stages"] = [{**s, "ida_from": list(s["ida_from"])} for s in out["stages"]]
        if not self.name:
            del out["name"]
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of ``to_dict()``; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ---- identity ------------------------------------------------------------------------
    def canonical(self) -> "Genome":
        """The same network with every irrelevant field normalised (name, unused cardinality,
        order and repeats of IDA edges)."""
        stages = tuple(
            dataclasses.replace(s, ida_from=tuple(sorted(set(s.ida_from)))) for s in self.stages
        )
        cardinality = self.cardinality if self.block == "bottleneckx" else 0
        return dataclasses.replace(self, stages=stages, cardinality=cardinality, name="")

    def canonical_hash(self) -> str:
        """Short stable id: equal for genomes that build the same network."""
        text = json.dumps(self.canonical().to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # ---- checks --------------------------------------------------------------------------
    def validate(self) -> "Genome":
        """Raise ``GenomeError`` naming the first offending field and what is allowed."""
        _field("stem.kernel", self.stem.kernel, odd)
        _field("stem.kernel", self.stem.kernel, integer(1, MAX_STEM_KERNEL))
        _field("stem.stride", self.stem.stride, one_of(STRIDES))
        if not self.stem.levels:
            raise GenomeError("stem.levels: must hold at least one level")
        for i, lv in enumerate(self.stem.levels):
            _field(f"stem.levels[{i}].channels", lv.channels, integer(1, MAX_CHANNELS))
            _field(f"stem.levels[{i}].convs", lv.convs, integer(1, MAX_CONVS))
            _field(f"stem.levels[{i}].stride", lv.stride, one_of(STRIDES))
        _field("block", self.block, one_of(BLOCKS))
        _field("cardinality", self.cardinality, integer(1, MAX_CARDINALITY))
        if not self.stages:
            raise GenomeError("stages: must hold at least one stage")
        for i, st in enumerate(self.stages):
            where = f"stages[{i}]"
            _field(f"{where}.channels", st.channels, integer(1, MAX_CHANNELS))
            _field(f"{where}.depth", st.depth, integer(1, MAX_DEPTH))
            _field(f"{where}.fan_in", st.fan_in, integer(2, MAX_FAN_IN))
            _field(f"{where}.stride", st.stride, one_of(STRIDES))
            _field(f"{where}.level_root", st.level_root, boolean)
            _field(f"{where}.root_kernel", st.root_kernel, one_of(ROOT_KERNELS))
            _field(f"{where}.root_residual", st.root_residual, boolean)
            for j in st.ida_from:
                if type(j) is not int or not 0 <= j < i - 1:
                    allowed = f"0..{i - 2}" if i >= 2 else "none: no stage before the input stage"
                    raise GenomeError(
                        f"{where}.ida_from: {j!r} is not allowed (earlier stages {allowed}; "
                        "the stage input joins through level_root)")
            self._check_block_width(where, st.channels)
        self._check_size()
        return self

    def _check_size(self) -> None:
        """Refuse a network too big to build: more than ``MAX_BLOCKS`` blocks or about
        ``MAX_WEIGHTS`` conv weights (the fields are already within their own limits)."""
        blocks = self.block_count()
        if blocks > MAX_BLOCKS:
            raise GenomeError(f"stages: {blocks:,} blocks in all is not allowed (at most "
                              f"{MAX_BLOCKS:,}; a tree has fan_in ** depth blocks)")
        weights = self.estimated_weights()
        if weights > MAX_WEIGHTS:
            raise GenomeError(f"stages: about {weights:,} conv weights in all is not allowed (at "
                              f"most {MAX_WEIGHTS:,}; use narrower or shallower stages)")

    def block_count(self) -> int:
        """Residual blocks in the trees plus convs in the stem levels."""
        return sum(lv.convs for lv in self.stem.levels) + sum(
            st.fan_in ** st.depth for st in self.stages)

    def estimated_weights(self) -> int:
        """Conv weights of the network, from the genome alone (one input channel; no
        projections, IDA edges or head): within about 30% of the built network's params."""
        c = self.stem.levels[0].channels
        total = self.stem.kernel ** 2 * c
        for lv in self.stem.levels:
            total += 9 * lv.channels * (c + (lv.convs - 1) * lv.channels)
            c = lv.channels
        for st in self.stages:
            block = _block_weights(self.block, st.channels, self.cardinality)
            root = st.fan_in * st.channels ** 2 * st.root_kernel ** 2
            total += st.fan_in ** st.depth * block + st.fan_in ** (st.depth - 1) * root
        return total

    def _check_block_width(self, where: str, channels: int) -> None:
        if self.block == "bottleneck" and channels < 2:
            raise GenomeError(f"{where}.channels: {channels} is not allowed (>= 2 for bottleneck)")
        if self.block == "bottleneckx":
            mid = channels * self.cardinality // 32
            if mid < self.cardinality or mid % self.cardinality:
                raise GenomeError(
                    f"{where}.channels: {channels} is not allowed with bottleneckx cardinality "
                    f"{self.cardinality} (channels * cardinality / 32 must be a positive multiple "
                    "of cardinality, i.e. channels a multiple of 32)"
                )

    # ---- geometry ------------------------------------------------------------------------
    @property
    def total_stride(self) -> int:
        strides = [self.stem.stride, *(lv.stride for lv in self.stem.levels)]
        strides += [st.stride for st in self.stages]
        total = 1
        for s in strides:
            total *= s
        return total

    def level_names(self) -> list[str]:
        """Names of the levels in order (``level0`` .. ``levelN``), as in the official code."""
        return [f"level{i}" for i in range(len(self.stem.levels) + len(self.stages))]

    def feature_sizes(self, size: int) -> list[int]:
        """Spatial size after each level for a square input of ``size`` pixels.

        Raises ``GenomeError`` when the input is too small: below 8 px, or so small that a
        stride-2 step would receive a 1x1 map."""
        if size < MIN_INPUT:
            raise GenomeError(f"input size {size} px is not allowed (>= {MIN_INPUT})")
        steps = [("stem", self.stem.stride)]
        steps += [(f"stem.levels[{i}]", lv.stride) for i, lv in enumerate(self.stem.levels)]
        steps += [(f"stages[{i}]", st.stride) for i, st in enumerate(self.stages)]
        sizes, cur = [], size
        for where, stride in steps:
            if stride == 2:
                if cur < 2:
                    raise GenomeError(
                        f"input size {size} px is too small for this genome: {where} (stride 2) "
                        f"would receive a 1x1 map; its strides need inputs of at least "
                        f"{self.min_input_size()} px (or use fewer stride-2 steps)"
                    )
                cur = (cur + 1) // 2
            sizes.append(cur)
        return sizes[1:]  # the base conv is not a level

    def check_input(self, shape: tuple[int, int, int]) -> list[int]:
        """Check an input shape (C, H, W) before anything is built: 1 to ``MAX_IN_CHANS``
        channels and sides up to ``MAX_INPUT`` px that every stride-2 step can take (see
        ``feature_sizes``). Returns ``feature_sizes`` of the shorter side."""
        c, h, w = shape
        text = f"input {c}x{h}x{w}"
        if not 1 <= c <= MAX_IN_CHANS:
            raise GenomeError(f"{text}: {c} channels is not allowed (1 to {MAX_IN_CHANS})")
        if max(h, w) > MAX_INPUT:
            raise GenomeError(f"{text}: {max(h, w)} px is not allowed (at most {MAX_INPUT} px "
                              "a side)")
        return self.feature_sizes(min(h, w))

    def min_input_size(self) -> int:
        """Smallest square input (>= 8 px) that every stride-2 step can take."""
        n_halvings = sum(s == 2 for s in [self.stem.stride, *(lv.stride for lv in self.stem.levels),
                                           *(st.stride for st in self.stages)])
        # with ceil-halving, the smallest size that stays >= 2 before each halving
        size = 2
        for _ in range(n_halvings - 1):
            size = 2 * size - 1
        return max(MIN_INPUT, size if n_halvings else 1)


# ---- parsing helpers ---------------------------------------------------------------------
def _block_weights(block: str, channels: int, cardinality: int) -> int:
    """Conv weights of one residual block of ``channels`` in and out."""
    if block == "basic":
        return 2 * 9 * channels ** 2
    groups = 1 if block == "bottleneck" else cardinality
    mid = channels // 2 if block == "bottleneck" else channels * cardinality // 32
    return 2 * channels * mid + 9 * mid ** 2 // groups


def _fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """Check that ``data`` is a mapping with the fields of dataclass ``cls``; return a copy."""
    if not isinstance(data, Mapping):
        raise GenomeError(f"{where or 'genome'}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in known:
            raise GenomeError(f"{prefix}{key}: unknown field (allowed: {', '.join(known)})")
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in data:
            raise GenomeError(f"{prefix}{name}: missing required field")
    return dict(data)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise GenomeError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def _parse_genome(data: Any) -> Genome:
    raw = _fields(Genome, data, "")
    stem = _fields(Stem, raw["stem"], "stem")
    stem["levels"] = tuple(
        StemLevel(**_fields(StemLevel, lv, f"stem.levels[{i}]"))
        for i, lv in enumerate(_list(stem["levels"], "stem.levels"))
    )
    raw["stem"] = Stem(**stem)
    stages = []
    for i, st in enumerate(_list(raw["stages"], "stages")):
        st = _fields(Stage, st, f"stages[{i}]")
        if "ida_from" in st:
            st["ida_from"] = tuple(_list(st["ida_from"], f"stages[{i}].ida_from"))
        stages.append(Stage(**st))
    raw["stages"] = tuple(stages)
    if "name" in raw and not isinstance(raw["name"], str):
        raise GenomeError(f"name: {raw['name']!r} is not allowed (a string)")
    return Genome(**raw)
