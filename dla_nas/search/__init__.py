"""Search: the space, the proxy evaluator, the backend-neutral trial core, and the Optuna and
Ray Tune backends that schedule trials.

The names below are the public API; they are imported on first use."""

from __future__ import annotations

from ..lazy import lazy_names

PUBLIC_NAMES = {
    "Proxy": ".space",
    "Recipe": ".space",
    "SearchSpace": ".space",
    "Task": ".space",
    "Suggester": ".specs",
    "Run": ".core",
    "SearchEvent": ".core",
    "SearchOptions": ".core",
    "ProxyEvaluator": ".evaluator",
    "run_optuna_search": ".optuna_backend",
    "run_ray_search": ".ray_backend",
}
__all__ = sorted(PUBLIC_NAMES)
__getattr__, __dir__ = lazy_names(__name__, PUBLIC_NAMES)
