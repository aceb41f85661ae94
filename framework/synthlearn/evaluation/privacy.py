"""Scoring a membership-inference attack: ROC, AUC, TPR at a low FPR, balanced accuracy.

An attack gives one score per candidate image, higher meaning "more likely a member".
These functions turn scores and the truth (member or not) into the figures the privacy
literature reports. A TPR at an FPR below ``1 / n_nonmembers`` cannot be resolved (one
false positive already exceeds it): it is reported as not available, with the reason,
never extrapolated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The low false-positive rates reported for every attack (Carlini et al., 2022).
LOW_FPRS: tuple[float, ...] = (0.01, 0.001)


def fpr_key(fpr: float) -> str:
    """The metrics.json key of the TPR at ``fpr``: ``tpr_at_fpr_0.01``."""
    return f"tpr_at_fpr_{fpr:g}"


def _check(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(is_member, dtype=bool)
    if scores.ndim != 1 or scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and is_member {truth.shape} must be 1-D "
                         "and the same length")
    if not np.isfinite(scores).all():
        raise ValueError("attack scores must be finite")
    if truth.all() or not truth.any():
        raise ValueError("need at least one member and one non-member")
    return scores, truth


def roc_curve(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1).

    A candidate is called a member when its score is at least the threshold; tied scores
    move together, so the curve never depends on the order of the candidates.
    """
    scores, truth = _check(scores, is_member)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(t)[last_of_tie]
    fp = np.cumsum(~t)[last_of_tie]
    fpr = np.r_[0.0, fp / (~truth).sum()]
    tpr = np.r_[0.0, tp / truth.sum()]
    return fpr, tpr


def roc_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random member outscores a random
    non-member (ties count half)."""
    fpr, tpr = roc_curve(scores, is_member)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float
               ) -> tuple[float | None, str | None]:
    """The highest TPR whose FPR is at most ``fpr``, or ``(None, reason)`` when there are
    too few non-members to resolve that rate."""
    scores, truth = _check(scores, is_member)
    n_out = int((~truth).sum())
    if n_out * fpr < 1.0:
        need = int(np.ceil(1.0 / fpr))
        return None, (f"{n_out} non-members cannot resolve an FPR of {fpr:g} "
                      f"(needs at least {need})")
    rates_f, rates_t = roc_curve(scores, truth)
    ok = rates_f <= fpr + 1e-12
    return float(rates_t[ok].max()), None


def best_balanced_accuracy(scores: np.ndarray, is_member: np.ndarray) -> float:
    """The attack's balanced accuracy, ``(TPR + TNR) / 2``, at its best threshold."""
    fpr, tpr = roc_curve(scores, is_member)
    return float(np.max((tpr + 1.0 - fpr) / 2.0))


def attack_metrics(scores: np.ndarray, is_member: np.ndarray) -> dict[str, Any]:
    """Everything metrics.json holds for one attack on one model: ``auc``,
    ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.001`` (None when not resolvable, with the reason
    under ``not_available``), ``balanced_accuracy``, ``n_members`` and ``n_nonmembers``."""
    scores, truth = _check(scores, is_member)
    out: dict[str, Any] = {"auc": roc_auc(scores, truth)}
    reasons = {}
    for fpr in LOW_FPRS:
        value, reason = tpr_at_fpr(scores, truth, fpr)
        out[fpr_key(fpr)] = value
        if reason:
            reasons[fpr_key(fpr)] = reason
    out["balanced_accuracy"] = best_balanced_accuracy(scores, truth)
    out["n_members"] = int(truth.sum())
    out["n_nonmembers"] = int((~truth).sum())
    if reasons:
        out["not_available"] = reasons
    return out
