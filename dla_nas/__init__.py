"""dla-nas: neural architecture search over Deep Layer Aggregation topologies.

Layout: ``arch`` (genome -> model, cost), ``backbones`` (any model with named feature taps;
``attach``), ``data``, ``train``, ``search`` (space, evaluator, core, backends), ``results``
(the run store), ``analysis`` (pareto, plots, export, confirm) and ``cli``.

``__all__`` and the subpackages' ``__all__`` are the public API; other module paths are
private and may change. The workflow's entry points are imported on first use, so
``import dla_nas`` loads neither Optuna nor Ray.
"""

from __future__ import annotations

from .arch.backbone_genome import BackboneGenome, genome_from_yaml
from .arch.builder import DLA, build_model
from .arch.cost import genome_cost
from .arch.genome import Genome, Stage, Stem, StemLevel
from .backbones import attach
from .errors import DlaNasError, GenomeError
from .lazy import lazy_names

__version__ = "0.2.0"

ON_FIRST_USE = {
    "DataConfig": ".data",
    "load_dataset": ".data",
    "TrainConfig": ".train",
    "SearchSpace": ".search",
    "SearchOptions": ".search",
    "run_optuna_search": ".search",
    "run_ray_search": ".search",
    "export_run": ".analysis",
    "front": ".analysis",
    "RunStore": ".results",
    "load_run": ".results",
}
__all__ = ["BackboneGenome", "DLA", "DataConfig", "DlaNasError", "Genome", "GenomeError",
           "RunStore", "SearchOptions", "SearchSpace", "Stage", "Stem", "StemLevel",
           "TrainConfig", "__version__", "attach", "build_model", "export_run", "front",
           "genome_cost", "genome_from_yaml", "load_dataset", "load_run", "run_optuna_search",
           "run_ray_search"]
__getattr__, __dir__ = lazy_names(__name__, ON_FIRST_USE)
