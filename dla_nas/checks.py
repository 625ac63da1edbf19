"""One way to validate a config field: a rule says what is allowed, ``check`` raises.

A rule maps a value to ``None`` when it is allowed, else to the text that says what is allowed
("an integer >= 1"); ``check(where, value, rule, error)`` turns that into the one-line error
``<where>: <value> is not allowed (<what is allowed>)`` of the caller's error class. Genomes,
spaces, training and data configs all use these rules.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from .errors import DlaNasError

Rule = Callable[[Any], "str | None"]


# the largest seed: numpy's and Optuna's samplers take seeds below 2**32
MAX_SEED = 2**32 - 1


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum: int | None = None, maximum: int | None = None) -> Rule:
    """An int (not a bool), at least ``minimum`` and at most ``maximum``."""
    def rule(v: Any) -> str | None:
        if type(v) is not int:
            return "an integer" + (f" >= {minimum}" if minimum is not None else "")
        if minimum is not None and v < minimum:
            return f">= {minimum}"
        if maximum is not None and v > maximum:
            return f"at most {maximum}"
        return None
    return rule


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Rule:
    """A finite int or float within the bounds (``*_open``: the bound itself is excluded)."""
    lo, hi = ("<" if low_open else "<="), ("<" if high_open else "<=")
    if low is not None and high is not None:
        bound = f"{low:g} {lo} x {hi} {high:g}"
    elif low is not None:
        bound = f"{'>' if low_open else '>='} {low:g}"
    else:
        bound = f"{hi} {high:g}" if high is not None else ""

    def rule(v: Any) -> str | None:
        if not _is_number(v):
            return f"a number {bound}".rstrip()
        if low is not None and (v < low or (low_open and v == low)):
            return bound
        if high is not None and (v > high or (high_open and v == high)):
            return bound
        return None
    return rule


def one_of(options: Iterable[Any]) -> Rule:
    """One of ``options`` (a bool is never taken for 0 or 1)."""
    allowed = tuple(options)
    text = "one of " + ", ".join(map(str, allowed))
    return lambda v: None if v in allowed and type(v) is not bool else text


def boolean(v: Any) -> str | None:
    """true or false."""
    return None if type(v) is bool else "true or false"


def odd(v: Any) -> str | None:
    """An odd integer >= 1."""
    return None if type(v) is int and v >= 1 and v % 2 else "an odd integer >= 1"


def optional(rule: Rule) -> Rule:
    """``rule``, or None."""
    return lambda v: None if v is None else rule(v)


def check(where: str, value: Any, rule: Rule, error: type[DlaNasError]) -> None:
    """Raise ``error`` naming ``where`` when ``rule`` does not allow ``value``."""
    allowed = rule(value)
    if allowed is not None:
        raise error(f"{where}: {value!r} is not allowed ({allowed})")


def check_fields(obj: Any, rules: dict[str, Rule], error: type[DlaNasError],
                 prefix: str = "") -> None:
    """``check`` each attribute of ``obj`` named in ``rules``."""
    for name, rule in rules.items():
        check(prefix + name, getattr(obj, name), rule, error)
