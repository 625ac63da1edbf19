"""Training one network: the trainer, its checkpoints, and the metrics.

The names below are the public API; they are imported on first use."""

from __future__ import annotations

from ..lazy import lazy_names

PUBLIC_NAMES = {
    "EpochReport": ".trainer",
    "TrainConfig": ".config",
    "TrainResult": ".trainer",
    "evaluate": ".trainer",
    "train": ".trainer",
    "checkpoint_model": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "DenseMetrics": ".metrics",
    "Metrics": ".metrics",
    "classification_metrics": ".metrics",
    "dense_metrics": ".metrics",
}
__all__ = sorted(PUBLIC_NAMES)
__getattr__, __dir__ = lazy_names(__name__, PUBLIC_NAMES)
