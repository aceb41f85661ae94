"""Membership-inference scoring: ROC, AUC, TPR at low FPR and balanced accuracy, checked
against scikit-learn and against cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from synthlearn.evaluation.privacy import (
    attack_metrics,
    best_balanced_accuracy,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


def test_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(500) < 0.5
    scores = np.round(rng.normal(truth * 0.7, 1.0), 1)  # rounding makes many ties
    assert roc_auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    fpr, tpr = roc_curve(scores, truth)
    sk_fpr, sk_tpr, _ = sk_roc_curve(truth, scores, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)


def test_hand_worked_case() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    truth = np.array([True, False, True, True, False, False])
    # thresholds: 0.9 -> (0, 1/3); 0.8 -> (1/3, 1/3); 0.7 -> (1/3, 2/3); 0.6 -> (1/3, 1) ...
    fpr, tpr = roc_curve(scores, truth)
    assert np.allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    assert np.allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert roc_auc(scores, truth) == pytest.approx(7 / 9)
    assert best_balanced_accuracy(scores, truth) == pytest.approx((1 + 2 / 3) / 2)


def test_perfect_and_chance_attacks() -> None:
    truth = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    perfect = attack_metrics(truth.astype(float), truth)
    assert perfect["auc"] == 1.0 and perfect["balanced_accuracy"] == 1.0
    assert perfect["tpr_at_fpr_0.01"] == 1.0 and perfect["tpr_at_fpr_0.001"] == 1.0
    same = attack_metrics(np.zeros(2000), truth)  # every score tied: no information
    assert same["auc"] == 0.5 and same["tpr_at_fpr_0.01"] == 0.0
    rng = np.random.default_rng(1)
    noise = attack_metrics(rng.random(2000), truth)
    assert abs(noise["auc"] - 0.5) < 0.05 and noise["tpr_at_fpr_0.01"] < 0.05
    assert (noise["n_members"], noise["n_nonmembers"]) == (1000, 1000)
    assert "not_available" not in noise


def test_low_fpr_needs_enough_nonmembers() -> None:
    truth = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = np.r_[np.linspace(1, 2, 300), np.linspace(0, 1.5, 300)]
    value, reason = tpr_at_fpr(scores, truth, 0.001)
    assert value is None
    assert reason == "300 non-members cannot resolve an FPR of 0.001 (needs at least 1000)"
    metrics = attack_metrics(scores, truth)
    assert metrics["tpr_at_fpr_0.001"] is None
    assert metrics["not_available"] == {"tpr_at_fpr_0.001": reason}
    # at 1% FPR (3 false positives allowed) every member scoring above the 3rd-highest
    # non-member counts: non-members reach 1.5, members above ~1.49 are found
    low = metrics["tpr_at_fpr_0.01"]
    assert 0.4 < low < 0.6


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        roc_auc(np.ones(3), np.ones(3, bool))
    with pytest.raises(ValueError, match="finite"):
        roc_auc(np.array([0.0, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="same length"):
        roc_auc(np.ones(3), np.ones(2, bool))
