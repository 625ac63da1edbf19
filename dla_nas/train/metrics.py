"""Classification metrics for one evaluation: accuracy and the figures that fit inspection
data, where one class can dominate and plain accuracy hides a class that is never found.

Computed with scikit-learn from the predictions; ``Metrics`` holds plain types only, so it
goes into ``metrics.json``, checkpoints and trial records as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


@dataclass(frozen=True)
class Metrics:
    """What one pass over a split measured."""

    acc: float
    loss: float
    balanced_acc: float  # mean per-class recall over the classes present in the split
    macro_f1: float
    per_class_recall: list[float | None]  # None for a class absent from the split
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    n: int

    def to_dict(self, prefix: str = "") -> dict:
        """The fields as a dict, each key prefixed (``val_``, ``test_``)."""
        return {prefix + k: v for k, v in asdict(self).items()}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                           loss: float) -> Metrics:
    """Metrics of predictions ``y_pred`` against labels ``y_true`` (int arrays)."""
    labels = list(range(num_classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(1)
    present = support > 0
    recall = np.where(present, np.diag(cm) / np.maximum(support, 1), np.nan)
    n = int(cm.sum())
    f1 = f1_score(y_true, y_pred, labels=[c for c in labels if present[c]], average="macro",
                  zero_division=0) if n else 0.0
    return Metrics(
        acc=float(np.trace(cm) / n) if n else 0.0,
        loss=float(loss),
        balanced_acc=float(recall[present].mean()) if n else 0.0,
        macro_f1=float(f1),
        per_class_recall=[None if np.isnan(r) else float(r) for r in recall],
        confusion=cm.astype(int).tolist(),
        n=n,
    )
