"""The student's targets: softened teacher probabilities mixed with the conditioning
label. Pure functions of arrays, so the maths is tested on its own."""

from __future__ import annotations

import numpy as np
from synthlearn.api import smoothed_onehot


def softened(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` per row, in float64 (stable for any scale)."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def teacher_probabilities(logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """The mean over teachers of each one's softened probabilities (one teacher: its own)."""
    if not logits:
        raise ValueError("need at least one teacher's logits")
    return np.mean([softened(x, temperature) for x in logits], axis=0)


def student_targets(labels: np.ndarray, teacher: np.ndarray, alpha: float,
                    label_smoothing: float) -> np.ndarray:
    """``alpha * teacher + (1 - alpha) * smoothed one-hot(labels)``, rows summing to 1.

    ``teacher`` is (N, K) probabilities; ``labels`` the (N,) conditioning labels the
    images were generated with.
    """
    n, k = teacher.shape
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} teacher rows")
    hard = smoothed_onehot(labels, k, label_smoothing).astype(np.float64)
    return (alpha * teacher + (1.0 - alpha) * hard).astype(np.float32)


def agreement(labels: np.ndarray, teacher: np.ndarray) -> float:
    """Share of synthetic images whose teacher's top class is the label they were
    generated with: how often the teacher recognises what the generator meant."""
    return float(np.mean(teacher.argmax(axis=1) == np.asarray(labels)))
