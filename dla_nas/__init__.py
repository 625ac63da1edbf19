"""dla-nas: neural architecture search over Deep Layer Aggregation topologies.

Layout: ``arch`` (genome -> model, cost), ``backbones`` (any model with named feature taps;
``attach``), ``data``, ``train``, ``search`` (space, evaluator, core, backends), ``results``
(the run store), ``analysis`` (pareto, plots, export, confirm) and ``cli``.

``__all__`` and the subpackages' ``__all__`` are the public API; other module paths are
private and may change. The names are imported on first use (all but the errors), so
``import dla_nas`` loads neither torch, Optuna nor Ray (the command line's ``--help`` stays
quick).
"""

from __future__ import annotations

from .errors import DlaNasError, GenomeError
from .lazy import lazy_names

__version__ = "0.2.0"

ON_FIRST_USE = {
    "BackboneGenome": ".arch.backbone_genome",
    "genome_from_yaml": ".arch.backbone_genome",
    "DLA": ".arch.builder",
    "build_model": ".arch.builder",
    "genome_cost": ".arch.cost",
    "Genome": ".arch.genome",
    "Stage": ".arch.genome",
    "Stem": ".arch.genome",
    "StemLevel": ".arch.genome",
    "attach": ".backbones",
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
