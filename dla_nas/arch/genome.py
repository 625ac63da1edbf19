"""Genome: a typed, frozen, serialisable description of one DLA network.

The meanings follow the DLA paper and its official code (see docs/guide/genomes.md):

- the **stem** is a base conv, an optional max-pool, and plain conv levels (official: level0
  and level1);
- each **stage** (official: level2..level5) is an aggregation tree with a depth and a fan-in
  (``aggregation: tree``, the paper's HDA), or a chain of ``blocks`` blocks with no root, as in
  a VGG or ResNet stage (``aggregation: none``). It has a width, a stride and a way to
  downsample, an optional ``level_root`` link (the stage input joins the stage's root, the
  paper's IDA link), extra IDA edges from earlier stages, and the root's kernel and residual.
  A chain gets a root only when something joins it;
- one **block** type for the whole network (plain, basic, bottleneck or bottleneckx with a
  cardinality).

``fan_in == 2`` trees everywhere reproduce the official networks exactly; chains of plain or
basic blocks reproduce the plain CNNs and CIFAR ResNets (``dla_nas.arch.zoo``). Fields added
after 0.1 are written only when they differ from their defaults, so every 0.1 genome keeps its
canonical hash.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..checks import boolean, check, integer, odd, one_of
from ..errors import GenomeError
from ..files import read_yaml

BLOCKS = ("basic", "bottleneck", "bottleneckx", "plain")
AGGREGATIONS = ("tree", "none")
# how a stride-2 stage downsamples: its first block is strided (and a tree's root input
# max-pooled, as in the official code), or a 2x2 max-pool comes before or after the blocks
DOWNSAMPLES = ("strided", "pool_first", "pool_last")
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
MAX_BLOCKS = 1024  # blocks and stem convs in the whole network
MAX_WEIGHTS = 500_000_000  # conv weights, estimated from the genome before building
# Limits of an input (C, H, W) that a network is counted or built for
MAX_INPUT = 2048
MAX_IN_CHANS = 1024
# how a built network's weights start (``arch.builder.build_model``'s ``init``): "official"
# is the reference's (every conv, the 1x1 classifier included, ~ N(0, sqrt(2 / (k*k*out))));
# "torch" keeps PyTorch's module defaults (convs kaiming-uniform with a = sqrt(5): about 4x
# smaller weights, so that with a BN after each conv they learn faster early on, and a
# classifier of std about 1 / sqrt(3 * width), where the official one has
# sqrt(2 / classes): 0.58 for 6 classes). Measured in docs/reports/unseen-data.md.
INITS = ("official", "torch")

_field = functools.partial(check, error=GenomeError)  # check one genome field


@dataclass(frozen=True)
class StemLevel:
    """A plain level of the stem: ``convs`` x (3x3 conv + BN + ReLU), the first with ``stride``."""

    channels: int
    convs: int = 1
    stride: int = 1


@dataclass(frozen=True)
class Stem:
    """Base conv (``kernel`` x ``kernel``, ``stride``, ``channels`` out: by default the first
    level's), a 2x2 max-pool when ``pool``, then the plain conv levels (there may be none)."""

    levels: tuple[StemLevel, ...] = ()
    kernel: int = 7
    stride: int = 1
    channels: int | None = None
    pool: bool = False

    @property
    def width(self) -> int:
        """Channels out of the base conv."""
        return self.channels if self.channels is not None else self.levels[0].channels


@dataclass(frozen=True)
class Stage:
    """One stage: an aggregation tree (``depth``, ``fan_in``) or a chain of ``blocks`` blocks.

    ``ida_from`` lists earlier stages (0-based indices into ``Genome.stages``) whose outputs,
    max-pooled to this stage's resolution, join this stage's last root. The stage input
    itself joins through ``level_root``, so the immediately preceding stage is not allowed here.
    ``level_root`` defaults to true for a tree (the official networks) and false for a chain.
    """

    channels: int
    depth: int = 1
    fan_in: int = 2
    stride: int = 2
    level_root: bool | None = None
    root_kernel: int = 1
    root_residual: bool = False
    ida_from: tuple[int, ...] = ()
    aggregation: str = "tree"
    blocks: int = 1
    downsample: str = "strided"

    def __post_init__(self) -> None:
        if self.level_root is None:  # frozen: the default is settled once, here
            object.__setattr__(self, "level_root", self.aggregation == "tree")

    @property
    def is_tree(self) -> bool:
        return self.aggregation == "tree"

    @property
    def has_root(self) -> bool:
        """A tree always aggregates; a chain only when the stage input or IDA edges join it."""
        return self.is_tree or bool(self.level_root or self.ida_from)

    @property
    def block_count(self) -> int:
        return self.fan_in ** self.depth if self.is_tree else self.blocks


# fields written only when they differ from these defaults (see the module docstring)
_STEM_OPTIONAL = (("channels", None), ("pool", False))
_STAGE_OPTIONAL = (("aggregation", "tree"), ("blocks", 1), ("downsample", "strided"))
_TREE_ONLY = ("depth", "fan_in")
_ROOT_ONLY = ("root_kernel", "root_residual")


class GenomeText:
    """What every kind of genome shares, from its ``to_dict`` and ``canonical``: YAML text
    and the canonical hash."""

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of ``to_dict()``; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    def canonical_hash(self) -> str:
        """Short stable id: equal for genomes that build the same network."""
        text = json.dumps(self.canonical().to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Genome(GenomeText):
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
        return read_genome(path, cls.from_dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, ints, bools, strings) that ``from_dict`` reads back."""
        out = dataclasses.asdict(self)
        out["stem"]["levels"] = [dict(lv) for lv in out["stem"]["levels"]]
        _drop_defaults(out["stem"], _STEM_OPTIONAL)
        out["stages"] = [_stage_dict(st, d) for st, d in zip(self.stages, out["stages"])]
        if not self.name:
            del out["name"]
        return out

    # ---- identity ------------------------------------------------------------------------
    def canonical(self) -> "Genome":
        """The same network with every irrelevant field normalised (name, unused cardinality,
        order and repeats of IDA edges, the base conv's width when it is the first level's)."""
        stages = tuple(
            dataclasses.replace(s, ida_from=tuple(sorted(set(s.ida_from)))) for s in self.stages
        )
        stem = self.stem
        if stem.levels and stem.channels == stem.levels[0].channels:
            stem = dataclasses.replace(stem, channels=None)
        cardinality = self.cardinality if self.block == "bottleneckx" else 0
        return dataclasses.replace(self, stem=stem, stages=stages, cardinality=cardinality,
                                   name="")

    # ---- checks --------------------------------------------------------------------------
    def validate(self) -> "Genome":
        """Raise ``GenomeError`` naming the first offending field and what is allowed."""
        _field("stem.kernel", self.stem.kernel, odd)
        _field("stem.kernel", self.stem.kernel, integer(1, MAX_STEM_KERNEL))
        _field("stem.stride", self.stem.stride, one_of(STRIDES))
        _field("stem.pool", self.stem.pool, boolean)
        if self.stem.channels is None and not self.stem.levels:
            raise GenomeError("stem.channels: required when stem.levels is empty (the base "
                              "conv's width)")
        if self.stem.channels is not None:
            _field("stem.channels", self.stem.channels, integer(1, MAX_CHANNELS))
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
            _field(f"{where}.aggregation", st.aggregation, one_of(AGGREGATIONS))
            _field(f"{where}.depth", st.depth, integer(1, MAX_DEPTH))
            _field(f"{where}.fan_in", st.fan_in, integer(2, MAX_FAN_IN))
            _field(f"{where}.blocks", st.blocks, integer(1, MAX_BLOCKS))
            _field(f"{where}.stride", st.stride, one_of(STRIDES))
            _field(f"{where}.downsample", st.downsample, one_of(DOWNSAMPLES))
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
            _check_unused(where, st)
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
        """Blocks in the stages plus convs in the stem levels."""
        return sum(lv.convs for lv in self.stem.levels) + sum(
            st.block_count for st in self.stages)

    def estimated_weights(self) -> int:
        """Conv weights of the network, from the genome alone (one input channel; no
        projections, IDA edges or head): within about 30% of the built network's params."""
        c = self.stem.width
        total = self.stem.kernel ** 2 * c
        for lv in self.stem.levels:
            total += 9 * lv.channels * (c + (lv.convs - 1) * lv.channels)
            c = lv.channels
        for st in self.stages:
            block = _block_weights(self.block, st.channels, self.cardinality)
            if st.is_tree:
                root = st.fan_in * st.channels ** 2 * st.root_kernel ** 2
                total += st.fan_in ** st.depth * block + st.fan_in ** (st.depth - 1) * root
            else:
                total += st.blocks * block + (2 * st.channels ** 2 if st.has_root else 0)
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
    def _steps(self) -> list[tuple[str, int]]:
        """Every resolution step in order: the base conv, the stem's pool, levels, stages."""
        steps = [("stem", self.stem.stride)]
        if self.stem.pool:
            steps.append(("stem.pool", 2))
        steps += [(f"stem.levels[{i}]", lv.stride) for i, lv in enumerate(self.stem.levels)]
        return steps + [(f"stages[{i}]", st.stride) for i, st in enumerate(self.stages)]

    @property
    def stem_stride(self) -> int:
        """Reduction before the first level: the base conv's stride times the stem's pool."""
        return self.stem.stride * (2 if self.stem.pool else 1)

    @property
    def total_stride(self) -> int:
        return math.prod(s for _, s in self._steps())

    def level_names(self) -> list[str]:
        """Names of the levels in order (``level0`` .. ``levelN``), as in the official code."""
        return [f"level{i}" for i in range(len(self.stem.levels) + len(self.stages))]

    def tap_strides(self) -> list[int]:
        """Each level's output stride as its module gives it, which is where a backbone taps
        it (``backbones.zoo.dla_backbone``): a ``pool_last`` stage's pool comes after its
        module, so its tap is at half the stride of the level's output."""
        strides, cur = [], self.stem_stride
        for lv in self.stem.levels:
            cur *= lv.stride
            strides.append(cur)
        for st in self.stages:
            pool_last = st.stride == 2 and st.downsample == "pool_last"
            strides.append(cur * (1 if pool_last else st.stride))
            cur *= st.stride
        return strides

    def feature_sizes(self, size: int) -> list[int]:
        """Spatial size after each level for a square input of ``size`` pixels.

        Raises ``GenomeError`` when the input is too small: below 8 px, or so small that a
        stride-2 step would receive a 1x1 map."""
        if size < MIN_INPUT:
            raise GenomeError(f"input size {size} px is not allowed (>= {MIN_INPUT})")
        steps = self._steps()
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
        return sizes[len(steps) - len(self.level_names()):]  # the stem's base is not a level

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
        n_halvings = sum(s == 2 for _, s in self._steps())
        # with ceil-halving, the smallest size that stays >= 2 before each halving
        size = 2
        for _ in range(n_halvings - 1):
            size = 2 * size - 1
        return max(MIN_INPUT, size if n_halvings else 1)


# ---- parsing helpers ---------------------------------------------------------------------
def read_genome(path: str | Path, parse: Callable[[Any], Any]) -> Any:
    """``parse`` of a genome YAML file, or of an exported config's ``genome:``; an error
    names the file."""
    path = Path(path)
    data = read_yaml(path, GenomeError)
    if isinstance(data, dict) and isinstance(data.get("genome"), dict):
        data = data["genome"]
    try:
        return parse(data)
    except GenomeError as exc:
        raise GenomeError(f"{path}: {exc}") from None


def exported_metadata(path: str | Path) -> dict:
    """The ``metadata:`` of an exported config (input shape, classes, recipe, ...); {} for a
    zoo name or a bare genome YAML."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return {}
    data = read_yaml(path, GenomeError)
    meta = data.get("metadata") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else {}


def _block_weights(block: str, channels: int, cardinality: int) -> int:
    """Conv weights of one block of ``channels`` in and out."""
    if block == "plain":
        return 9 * channels ** 2
    if block == "basic":
        return 2 * 9 * channels ** 2
    groups = 1 if block == "bottleneck" else cardinality
    mid = channels // 2 if block == "bottleneck" else channels * cardinality // 32
    return 2 * channels * mid + 9 * mid ** 2 // groups


def _check_unused(where: str, st: Stage) -> None:
    """A field that this kind of stage does not use must keep its default, so that a genome
    says only what it builds."""
    unused = {"blocks": 1} if st.is_tree else {"depth": 1, "fan_in": 2}
    if not st.has_root:
        unused.update(root_kernel=1, root_residual=False)
    if st.stride == 1:
        unused["downsample"] = "strided"
    for name, default in unused.items():
        if getattr(st, name) != default:
            why = ("a tree has fan_in ** depth blocks" if name == "blocks" else
                   "aggregation none is a chain of `blocks` blocks" if name in _TREE_ONLY else
                   "a stride-1 stage does not downsample" if name == "downsample" else
                   "this chain has no root: nothing joins it")
            with_what = "stride 1" if name == "downsample" else f"aggregation {st.aggregation}"
            raise GenomeError(f"{where}.{name}: {getattr(st, name)!r} is not allowed with "
                              f"{with_what} (leave it at {default!r}: {why})")


def _drop_defaults(data: dict[str, Any], defaults: tuple[tuple[str, Any], ...]) -> None:
    for name, default in defaults:
        if data.get(name) == default:
            del data[name]


def _stage_dict(stage: Stage, data: dict[str, Any]) -> dict[str, Any]:
    """A stage's plain data: new fields only where they differ from their defaults, and a
    chain without the tree's (and, without a root, the root's) fields."""
    data = {**data, "ida_from": list(stage.ida_from)}
    _drop_defaults(data, _STAGE_OPTIONAL)
    if not stage.is_tree:
        for name in _TREE_ONLY + (() if stage.has_root else _ROOT_ONLY):
            del data[name]
    return data


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
        for i, lv in enumerate(_list(stem.get("levels", ()), "stem.levels"))
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
