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
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import GenomeError

BLOCKS = ("basic", "bottleneck", "bottleneckx")
ROOT_KERNELS = (1, 3)
STRIDES = (1, 2)
MIN_INPUT = 8



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
        _check_int("stem.kernel", self.stem.kernel, 1)
        if self.stem.kernel % 2 == 0:
            raise GenomeError(f"stem.kernel: {self.stem.kernel} is not allowed (odd, >= 1)")
        _check_choice("stem.stride", self.stem.stride, STRIDES)
        if not self.stem.levels:
            raise GenomeError("stem.levels: must hold at least one level")
        for i, lv in enumerate(self.stem.levels):
            _check_int(f"stem.levels[{i}].channels", lv.channels, 1)
            _check_int(f"stem.levels[{i}].convs", lv.convs, 1)
            _check_choice(f"stem.levels[{i}].stride", lv.stride, STRIDES)
        _check_choice("block", self.block, BLOCKS)
        _check_int("cardinality", self.cardinality, 1)
        if not self.stages:
            raise GenomeError("stages: must hold at least one stage")
        for i, st in enumerate(self.stages):
            where = f"stages[{i}]"
            _check_int(f"{where}.channels", st.channels, 1)
            _check_int(f"{where}.depth", st.depth, 1)
            _check_int(f"{where}.fan_in", st.fan_in, 2)
            _check_choice(f"{where}.stride", st.stride, STRIDES)
            _check_bool(f"{where}.level_root", st.level_root)
            _check_choice(f"{where}.root_kernel", st.root_kernel, ROOT_KERNELS)
            _check_bool(f"{where}.root_residual", st.root_residual)
            for j in st.ida_from:
                if type(j) is not int or not 0 <= j < i - 1:
                    allowed = f"0..{i - 2}" if i >= 2 else "none: no stage before the input stage"
                    raise GenomeError(
                        f"{where}.ida_from: {j!r} is not allowed (earlier stages {allowed}; "
                        "the stage input joins through level_root)"
                    )
            self._check_block_width(where, st.channels)
        return self

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
def read_yaml(path: Path, error: type[Exception]) -> Any:
    """The YAML data of ``path``; unreadable or malformed files raise ``error`` naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None


def _check_int(where: str, value: Any, minimum: int) -> None:
    if type(value) is not int:
        raise GenomeError(f"{where}: {value!r} is not allowed (an integer >= {minimum})")
    if value < minimum:
        raise GenomeError(f"{where}: {value} is not allowed (>= {minimum})")


def _check_choice(where: str, value: Any, allowed: tuple) -> None:
    if value not in allowed or type(value) is bool:
        choices = ", ".join(str(a) for a in allowed)
        raise GenomeError(f"{where}: {value!r} is not allowed (one of {choices})")


def _check_bool(where: str, value: Any) -> None:
    if type(value) is not bool:
        raise GenomeError(f"{where}: {value!r} is not allowed (true or false)")


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
