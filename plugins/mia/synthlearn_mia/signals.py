"""What the attacks read from a model's output on each candidate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] before taking logarithms.
EPS = 1e-12


def true_class_probability(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p_y(x)``: the probability the model gives each candidate's own label."""
    return probs[np.arange(len(labels)), labels]


def true_class_logit_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p_y(x)`` from raw outputs (a softmax, then the label's entry)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return true_class_probability(e / e.sum(axis=1, keepdims=True), labels)


def scaled_logit(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log(p_y / (1 - p_y)) = z_y - logsumexp(z_j, j != y)``: LiRA's signal, close to
    Gaussian across models. Computed from the raw outputs, so it does not saturate
    when ``p_y`` rounds to 1."""
    rows = np.arange(len(labels))
    own = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1)
    rest = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return own - rest


def reference_signals(ctx: Any, signal: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      n: int, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """``signal(logits, labels)`` of every reference model on every candidate, shape
    (models, candidates), and the IN masks, same shape."""
    labels = ctx.candidates.labels
    models = ctx.reference_models(n, reference)
    values = np.stack([signal(ctx.logits(model), labels) for model, _ in models])
    masks = np.stack([mask for _, mask in models])
    return values, masks
