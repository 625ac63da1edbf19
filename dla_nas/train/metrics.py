"""Metrics of one evaluation: accuracy and the figures that fit inspection data, where one
class can dominate and plain accuracy hides a class that is never found; for a dense task
(segmentation) the same figures over pixels, and the intersection over union.

Both are computed from a confusion matrix (of the images, or of the pixels); ``Metrics``
holds plain types only, so it goes into ``metrics.json``, checkpoints and trial records as it
is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


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


def _recalls(cm: np.ndarray) -> np.ndarray:
    """Per-class recall of a confusion matrix (rows true); NaN for a class with no image."""
    support = cm.sum(1)
    return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                           loss: float) -> Metrics:
    """Metrics of predictions ``y_pred`` against labels ``y_true`` (int arrays in
    ``[0, num_classes)``), from their confusion matrix: macro F1 over the classes present, as
    scikit-learn's ``f1_score(labels=present, average="macro")`` (tested against it), without
    its per-call cost at every epoch of every trial."""
    k = num_classes
    y_true, y_pred = (np.asarray(y, dtype=np.int64) for y in (y_true, y_pred))
    for name, y in (("labels", y_true), ("predictions", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= k):
            wrong = sorted(set(y[(y < 0) | (y >= k)].tolist()))
            raise ValueError(f"{name} outside 0..{k - 1}: {wrong}")
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    recall = _recalls(cm)
    present = ~np.isnan(recall)
    n = int(cm.sum())
    f1 = 2 * np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1), 1)  # a present class: sum > 0
    return Metrics(
        acc=float(np.trace(cm) / n) if n else 0.0,
        loss=float(loss),
        balanced_acc=float(recall[present].mean()) if n else 0.0,
        macro_f1=float(f1[present].mean()) if n else 0.0,
        per_class_recall=[None if np.isnan(r) else float(r) for r in recall],
        confusion=cm.astype(int).tolist(),
        n=n,
    )


@dataclass(frozen=True)
class DenseMetrics(Metrics):
    """``Metrics`` over the scored pixels (``n``; ``IGNORE_INDEX`` left out): ``acc`` is the
    pixel accuracy, ``balanced_acc`` the mean per-class pixel accuracy (mPA) over the classes
    present, ``macro_f1`` the mean Dice; ``miou`` the mean intersection over union. A
    class's IoU and Dice count where it is in the truth or the prediction (else None)."""

    miou: float = 0.0
    per_class_iou: list[float | None] = field(default_factory=list)
    per_class_dice: list[float | None] = field(default_factory=list)


def metrics_from_dict(data: dict) -> Metrics:
    """``Metrics.to_dict()`` read back (a dense task's fields make ``DenseMetrics``)."""
    return (DenseMetrics if "miou" in data else Metrics)(**data)


def dense_metrics(cm: np.ndarray, loss: float) -> DenseMetrics:
    """The figures of a pixel confusion matrix ``cm`` (rows true, columns predicted)."""
    cm = np.asarray(cm, dtype=np.int64)
    tp, truth, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    union = truth + predicted - tp
    scored = union > 0
    iou = np.where(scored, tp / np.maximum(union, 1), np.nan)
    dice = np.where(scored, 2 * tp / np.maximum(truth + predicted, 1), np.nan)
    recall = _recalls(cm)
    n = int(cm.sum())

    def mean(values: np.ndarray) -> float:
        return float(np.nanmean(values)) if n and not np.isnan(values).all() else 0.0

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return DenseMetrics(acc=float(tp.sum() / n) if n else 0.0, loss=float(loss),
                        balanced_acc=mean(recall), macro_f1=mean(dice),
                        per_class_recall=listed(recall), confusion=cm.tolist(), n=n,
                        miou=mean(iou), per_class_iou=listed(iou), per_class_dice=listed(dice))


# within this much balanced accuracy of chance (1 / classes), a model has learnt little
CHANCE_MARGIN = 0.05
# a model that gives one class to at least this share of the images answers one class
ONE_CLASS_SHARE = 0.95


def learnt_little(confusion: list[list[int]], class_names: list[str] | None = None,
                  unit: str = "images") -> str | None:
    """A warning for a model at or near chance level, or one that answers one class for
    almost every image (the magnetic-tile model that called all 269 test images "Free");
    None for a model that does better. ``confusion``: rows true, columns predicted, counts
    of ``unit`` (images, or a dense task's pixels)."""
    cm = np.asarray(confusion)
    support, predicted, n = cm.sum(1), cm.sum(0), int(cm.sum())
    present = support > 0
    if n == 0 or present.sum() < 2:
        return None
    top = int(predicted.argmax())
    name = class_names[top] if class_names else f"class {top}"
    if predicted[top] >= ONE_CLASS_SHARE * n and support[top] < ONE_CLASS_SHARE * n:
        return (f"the model answers {name} for {predicted[top]} of {n} {unit}: it has learnt "
                "little beyond the largest class")
    chance = 1 / present.sum()
    balanced = float(np.nanmean(_recalls(cm)))
    if balanced <= chance + CHANCE_MARGIN:
        figure = "mean pixel accuracy" if unit == "pixels" else "balanced accuracy"
        return (f"{figure} {balanced:.2f} is at chance level ({chance:.2f} for "
                f"{present.sum()} classes): the model has learnt little")
    return None
