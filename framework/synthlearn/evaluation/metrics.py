"""Utility metrics of a classifier on a real held-out test set."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and ROC AUC of class probabilities against labels.

    ``probs`` is (N, num_classes), ``labels`` is (N,) integers in ``0..num_classes-1``.
    The prediction is the arg-max class.

    * ``accuracy``: fraction of correct predictions.
    * ``balanced_accuracy``: mean per-class recall over the classes present in
      ``labels`` (``sklearn.metrics.balanced_accuracy_score``).
    * ``auc``: with two classes, the ROC AUC of the class-1 probability; with more,
      the unweighted mean of the one-vs-rest ROC AUCs (``probs[:, c]`` scoring class
      ``c`` against all others), taken over the classes present in ``labels`` (equal
      to sklearn's ``multi_class="ovr", average="macro"`` when all classes are
      present). When ``labels`` holds a single class the AUC is undefined and
      ``float("nan")`` is returned; the run report stores NaN as ``null`` (None).

    All values are plain Python floats.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],) or probs.shape[0] == 0:
        raise ValueError(
            f"expected probs (N, num_classes) and labels (N,) with N > 0, got "
            f"{probs.shape} and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in 0..{probs.shape[1] - 1}")
    predictions = probs.argmax(axis=1)
    accuracy = float(np.mean(predictions == labels))
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" is expected on small test sets.
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(labels, predictions))
    return {"accuracy": accuracy, "balanced_accuracy": balanced, "auc": _auc(probs, labels)}


def _auc(probs: np.ndarray, labels: np.ndarray) -> float:
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels == 1, probs[:, 1]))
    per_class = [roc_auc_score(labels == c, probs[:, c]) for c in present]
    return float(np.mean(per_class))
