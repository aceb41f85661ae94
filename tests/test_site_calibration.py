"""Prior-matching logit biases fitted at the sites and added at the server (calibrate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from synthlearn.arms.site_calibration import apply_biases, fit_biases, output_bias
from synthlearn.errors import SynthlearnError
from synthlearn.sitework.exchange import Payload


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_fitted_biases_make_mean_predictions_match_the_class_shares() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    # an over-confident model that leans towards class 2
    logits = 6.0 * np.eye(3)[labels] + rng.normal(0, 3, (600, 3)) + [0.0, 0.0, 4.0]
    before = _softmax(logits).mean(axis=0)
    counts = np.bincount(labels, minlength=3) + 1.0
    assert before[2] > counts[2] / counts.sum() + 0.1
    bias = fit_biases(logits, labels, 3)
    after = _softmax(logits + bias).mean(axis=0)
    np.testing.assert_allclose(after, counts / counts.sum(), atol=1e-5)
    assert abs(bias.sum()) < 1e-9 and bias[2] < bias[0]
    # and the predictions are more often right
    assert np.mean((logits + bias).argmax(1) == labels) > np.mean(logits.argmax(1) == labels)


def test_a_class_missing_at_a_site_gets_a_finite_bias() -> None:
    logits = np.array([[2.0, 0.0], [1.0, 0.5], [3.0, -1.0]])
    bias = fit_biases(logits, np.array([0, 0, 0]), 2)
    assert np.isfinite(bias).all()
    # shares (3 + 1) / 5 and (0 + 1) / 5
    np.testing.assert_allclose(_softmax(logits + bias).mean(axis=0), [0.8, 0.2], atol=1e-5)


def _head() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    model.get_classifier = lambda: model[1]  # as timm models offer it
    return model


def test_server_adds_the_size_weighted_mean_bias() -> None:
    model = _head()
    start = output_bias(model).detach().clone()
    received = {0: Payload({"bias": torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)},
                           {"n": 300}),
                2: Payload({"bias": torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)},
                           {"n": 100})}
    added = apply_biases(model, received, 3)
    np.testing.assert_allclose(added, [0.5, 0.0, -0.5])
    torch.testing.assert_close(output_bias(model).detach(),
                               start + torch.tensor([0.5, 0.0, -0.5]))


def test_bad_site_biases_and_models_without_a_head_bias_are_named() -> None:
    with pytest.raises(SynthlearnError, match="^site 1: calibration biases"):
        apply_biases(_head(), {1: Payload({"bias": torch.zeros(2)}, {"n": 5})}, 3)
    with pytest.raises(SynthlearnError, match="^site 3: .*image count"):
        apply_biases(_head(), {3: Payload({"bias": torch.zeros(3)}, {"n": 0})}, 3)
    sequential = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    assert output_bias(sequential) is sequential[1].bias
    with pytest.raises(SynthlearnError, match="calibrate needs a model"):
        output_bias(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

    with pytest.raises(SynthlearnError, match="calibrate needs a model"):
        output_bias(Custom())
