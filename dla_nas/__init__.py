"""dla-nas: neural architecture search over Deep Layer Aggregation topologies.

Layout: ``arch`` (genome -> model, cost), ``backbones`` (any model with named feature taps;
``attach``), ``data``, ``train``, ``search`` (space, evaluator, core, backends), ``results``
(the run store), ``analysis`` (pareto, plots, export, confirm) and ``cli``. The module paths
of 0.1 (``dla_nas.zoo``, ``dla_nas.training``, ...) still import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

from .arch.backbone_genome import BackboneGenome
from .arch.builder import DLA, build_model
from .arch.genome import Genome, Stage, Stem, StemLevel
from .backbones import attach
from .errors import DlaNasError, GenomeError

__version__ = "0.1.0"

__all__ = ["DLA", "BackboneGenome", "DlaNasError", "Genome", "GenomeError", "Stage", "Stem",
           "StemLevel", "attach", "build_model", "__version__"]

# module paths of 0.1 -> where the module lives now
MOVED = {"genome": "arch.genome", "blocks": "arch.blocks", "builder": "arch.builder",
         "zoo": "arch.zoo", "cost": "arch.cost", "baselines": "arch.baselines",
         "training": "train.trainer", "metrics": "train.metrics", "space": "search.space",
         "proxy": "search.evaluator", "search_ray": "search.ray_backend",
         "pareto": "analysis.pareto", "plots": "analysis.plots", "export": "analysis.export",
         "confirm": "analysis.confirm"}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``dla_nas.<old name>`` as the module at its new path (the same object)."""

    def find_spec(self, fullname: str, path=None, target=None):
        parent, _, name = fullname.rpartition(".")
        if parent == __name__ and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}")
        spec.loader_state = module.__spec__  # the import system sets the alias spec on it
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = module.__spec__.loader_state  # already executed: keep its own spec


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> ModuleType:
    """``dla_nas.zoo`` and the other old paths as attributes, imported on first use."""
    if name in MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
