"""Value specs of a search space (fixed value, choice list, int range, float range on a log or
linear scale), the checks of their values, and the suggesters that draw from them."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, Mapping, Protocol

from ..arch.genome import AGGREGATIONS, DOWNSAMPLES, ROOT_KERNELS, STRIDES, Stage
from ..checks import Rule, boolean, check, integer, one_of, optional
from ..errors import SpaceError


class Suggester(Protocol):
    """The part of ``optuna.Trial`` that sampling uses."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


@dataclass(frozen=True)
class Fixed:
    value: Any

    def values(self) -> list:
        return [self.value]

    def offers(self, value: Any) -> bool:
        return _same(value, self.value)

    def describe(self) -> str:
        return repr(self.value)

    def draw(self, trial: Suggester, name: str) -> Any:
        return self.value


@dataclass(frozen=True)
class Choice:
    options: tuple

    def values(self) -> list:
        return list(self.options)

    def offers(self, value: Any) -> bool:
        return any(_same(value, option) for option in self.options)

    def describe(self) -> str:
        return ", ".join(map(repr, self.options))

    def draw(self, trial: Suggester, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def values(self) -> list:
        return list(range(self.low, self.high + 1, self.step))

    def offers(self, value: Any) -> bool:
        return type(value) is int and value in range(self.low, self.high + 1, self.step)

    def describe(self) -> str:
        return f"{self.low} to {self.high}" + (f" in steps of {self.step}" if self.step > 1 else "")

    def draw(self, trial: Suggester, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, step=self.step)


@dataclass(frozen=True)
class FloatRange:
    """Any number from ``low`` to ``high``, uniform on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def values(self) -> list:
        return [self.low, self.high]

    def offers(self, value: Any) -> bool:
        return type(value) is float and self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.low:g} to {self.high:g}"

    @property
    def middle(self) -> float:
        """The centre of the range on its own scale."""
        if self.log:
            return math.sqrt(self.low * self.high)
        return (self.low + self.high) / 2

    def draw(self, trial: Suggester, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


# ``offers(value)``: whether a draw can give ``value`` (a value queued by hand must be one,
# of the same type: 1.0 or true is not the integer 1, which a trial's key would tell apart);
# ``describe()``: the values in words, for an error
Spec = Fixed | Choice | IntRange | FloatRange


def _same(value: Any, option: Any) -> bool:
    return type(value) is type(option) and value == option


def parse_spec(raw: Any, where: str, rule: Rule, *, floats: bool = False) -> Spec:
    """Parse a value spec and check every value it can take with ``rule``. ``floats``: a
    range may be of numbers (``{low: 0.01, high: 0.3, log: true}``), not only integers."""
    if isinstance(raw, Mapping):
        spec: Spec = _range(raw, where, floats)
    elif isinstance(raw, list):
        if not raw:
            raise SpaceError(f"{where}: an empty choice list is not allowed")
        if len(set(map(repr, raw))) != len(raw):
            raise SpaceError(f"{where}: choices {raw} repeat a value")
        spec = Choice(tuple(raw))
    else:
        spec = Fixed(raw)
    for value in (spec.values() if not isinstance(spec, IntRange) else [spec.low, spec.high]):
        check(where, value, rule, SpaceError)
    return spec


def _range(raw: Mapping, where: str, floats: bool) -> IntRange | FloatRange:
    keys = {"low", "high", "step"} | ({"log"} if floats else set())
    if set(raw) - keys or not {"low", "high"} <= set(raw):
        raise SpaceError(f"{where}: a range needs keys low, high (and optional "
                         f"{' or '.join(sorted(keys - {'low', 'high'}))}); got {sorted(raw)}")
    low, high = raw["low"], raw["high"]
    if floats:
        log = raw.get("log", False)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if "step" in raw or not numbers or not isinstance(log, bool) or not low < high or (
                log and low <= 0):
            raise SpaceError(f"{where}: range {dict(raw)} is not allowed (numbers with low < "
                             "high, > 0 on a log scale; log true or false; no step)")
        return FloatRange(float(low), float(high), log)
    step = raw.get("step", 1)
    if not all(type(v) is int for v in (low, high, step)) or step < 1 or low > high:
        raise SpaceError(f"{where}: range {dict(raw)} is not allowed "
                         "(integers with low <= high and step >= 1)")
    return IntRange(low, high, step)


# a stem level whose convs is 0 is left out of the genome
STEM_LEVEL_CHECKS = {"channels": integer(1), "convs": integer(0), "stride": one_of(STRIDES)}
STAGE_CHECKS = {"channels": integer(1), "aggregation": one_of(AGGREGATIONS),
                "depth": integer(1), "fan_in": integer(2), "blocks": integer(1),
                "stride": one_of(STRIDES), "downsample": one_of(DOWNSAMPLES),
                "level_root": optional(boolean), "root_kernel": one_of(ROOT_KERNELS),
                "root_residual": boolean, "ida_from": boolean}
# the genome's own defaults (level_root None: the aggregation's own); ida_from is searched as
# a switch (edges from every allowed stage, or none), so its default is off
STAGE_DEFAULTS = {**{f.name: f.default for f in fields(Stage)
                     if f.name in STAGE_CHECKS and f.default is not MISSING}, "ida_from": False}


def mapping(raw: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    """``raw`` as a dict, checked to be a mapping with only ``allowed`` keys and all of
    ``required``."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise SpaceError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in raw:
            raise SpaceError(f"{where}.{key}: missing required key")
    return dict(raw)


def field_specs(raw: Any, where: str, checks: dict, defaults: dict) -> dict[str, Spec]:
    """The value spec of each field in ``checks``, checked with its rule (a missing field takes
    its default from ``defaults``; one without a default is required)."""
    raw = mapping(raw, where, set(checks), required={k for k in checks if k not in defaults})
    return {k: parse_spec(raw.get(k, defaults.get(k)), f"{where}.{k}", rule)
            for k, rule in checks.items()}


class RandomSuggester:
    """Draws uniformly, for the space's self-check."""

    def __init__(self, rng) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self.rng.choice(choices)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.rng.randrange(low, high + 1, step)

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        return self.rng.uniform(low, high)


class Unreachable(Exception):
    """A ``TargetSuggester`` was asked for a value its spec does not offer."""


class TargetSuggester:
    """Answers each parameter with the value of a target (``target(name)``), picked from
    the offered choices by ``match(name, choice, value)``; raises ``Unreachable`` naming the
    parameter when no choice matches. Used to find a genome inside a space."""

    def __init__(self, target, match) -> None:
        self.target, self.match = target, match

    def _pick(self, name: str, choices: list) -> Any:
        value = self.target(name)
        for choice in choices:
            if self.match(name, choice, value):
                return choice
        raise Unreachable(f"{name} {value!r} is not among {choices}")

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self._pick(name, choices)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self._pick(name, list(range(low, high + 1, step)))


class Recorder:
    """Passes draws to ``inner`` and records them in ``values``; a name in ``answers`` is
    answered from there instead (``SearchSpace.find`` tries each width multiplier)."""

    def __init__(self, inner: Suggester, values: dict[str, Any],
                 answers: dict[str, Any] | None = None) -> None:
        self.inner, self.values, self.answers = inner, values, answers or {}

    def suggest_categorical(self, name: str, choices: list) -> Any:
        value = self.answers[name] if name in self.answers else \
            self.inner.suggest_categorical(name, choices)
        self.values[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        self.values[name] = self.inner.suggest_int(name, low, high, step)
        return self.values[name]


class FixedSuggester:
    """Answers from a fixed assignment, for enumeration."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self.values[name]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.values[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return self.values[name]
