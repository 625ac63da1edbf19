"""dla-nas: neural architecture search over Deep Layer Aggregation topologies.

Layout: ``arch`` (genome -> model, cost), ``backbones`` (any model with named feature taps;
``attach``), ``data``, ``train``, ``search`` (space, evaluator, core, backends), ``results``
(the run store), ``analysis`` (pareto, plots, export, confirm) and ``cli``.
"""

from __future__ import annotations

from .arch.backbone_genome import BackboneGenome
from .arch.builder import DLA, build_model
from .arch.genome import Genome, Stage, Stem, StemLevel
from .backbones import attach
from .errors import DlaNasError, GenomeError

__version__ = "0.1.0"

__all__ = ["DLA", "BackboneGenome", "DlaNasError", "Genome", "GenomeError", "Stage", "Stem",
           "StemLevel", "attach", "build_model", "__version__"]
