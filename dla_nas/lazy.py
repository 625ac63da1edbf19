"""A package's public names, imported on first use (PEP 562): ``import dla_nas.search`` stays
light (no torch, Ray or Optuna) until one of its names is used, and no package imports its
submodules only to list them (``package.submodule`` imports it when first read)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Callable


def lazy_names(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any],
                                                             Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public ``names`` map to the
    relative module that defines each (``{"SearchSpace": ".space"}``)."""

    def __getattr__(name: str) -> Any:
        if name not in names:  # a submodule, as after ``import package.name``
            if importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f"{package}.{name}")
        value = getattr(importlib.import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)  # found once
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | names.keys())

    return __getattr__, __dir__
