"""dla-nas: neural architecture search over Deep Layer Aggregation topologies."""

from .builder import DLA, build_model
from .genome import Genome, GenomeError, Stage, Stem, StemLevel

__version__ = "0.1.0"

__all__ = ["DLA", "Genome", "GenomeError", "Stage", "Stem", "StemLevel", "build_model",
           "__version__"]
