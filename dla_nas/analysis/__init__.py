"""What a finished run is read for: Pareto fronts, plots, exported configs, confirmation on
the test split, prediction with an export, and int8 quantisation.

The names below are the public API; they are imported on first use."""

from __future__ import annotations

from ..lazy import lazy_names

PUBLIC_NAMES = {
    "best_record": ".pareto",
    "eligible": ".pareto",
    "front": ".pareto",
    "hypervolume": ".pareto",
    "knee": ".pareto",
    "run_objectives": ".pareto",
    "Candidate": ".confirm",
    "ConfirmRecord": ".confirm",
    "ConfirmStore": ".confirm",
    "Confirmed": ".confirm",
    "load_confirmed": ".confirm",
    "summarize": ".confirm",
    "export_run": ".export",
    "export_training": ".export",
    "Predictor": ".predict",
    "load_predictor": ".predict",
    "quantize": ".int8",
}
__all__ = sorted(PUBLIC_NAMES)
__getattr__, __dir__ = lazy_names(__name__, PUBLIC_NAMES)
