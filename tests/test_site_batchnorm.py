"""Batch-norm statistics measured at the sites and pooled at the server (adapt_bn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from synthlearn.arms.site_batchnorm import pool_statistics
from synthlearn.errors import SynthlearnError
from synthlearn.models.training import batchnorm_layers, refresh_batchnorm
from synthlearn.sitework.exchange import Payload


def _input_norm() -> nn.Module:
    """A model whose first layer normalises the image itself: its statistics are the
    images' per-channel mean and variance (in [-1, 1] scale)."""
    return nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))


def _site_payload(model: nn.Module, images: np.ndarray) -> Payload:
    refresh_batchnorm(model, images, batch_size=len(images))
    tensors = {}
    for name, layer in batchnorm_layers(model):
        tensors[f"{name}.running_mean"] = layer.running_mean.clone()
        tensors[f"{name}.running_var"] = layer.running_var.clone()
    return Payload(tensors, {"n": len(images)})


def _images(rng: np.random.Generator, n: int, brightness: int) -> np.ndarray:
    return rng.integers(0, 120, size=(n, 2, 8, 8)).astype(np.uint8) + np.uint8(brightness)


def test_pooled_statistics_are_those_of_all_sites_images() -> None:
    rng = np.random.default_rng(0)
    sites = [_images(rng, 40, 0), _images(rng, 120, 100)]  # unequal sizes and means
    torch.manual_seed(0)
    model = _input_norm()
    payloads = {i: _site_payload(model, images) for i, images in enumerate(sites)}
    assert pool_statistics(model, payloads) == 2
    pixels = np.concatenate(sites).astype(np.float64) * (2 / 255) - 1
    mean = pixels.mean(axis=(0, 2, 3))
    var = pixels.var(axis=(0, 2, 3))
    first = model[0]
    np.testing.assert_allclose(first.running_mean.numpy(), mean, rtol=1e-5)
    # sites report unbiased variances over 40*64 and 120*64 values: within 0.1 %
    np.testing.assert_allclose(first.running_var.numpy(), var, rtol=1e-3)
    # the two sites differ in brightness: the pooled variance includes that spread
    assert first.running_var.min() > max(p.tensors["0.running_var"].max()
                                         for p in payloads.values())


def test_a_site_with_missing_or_broken_statistics_is_named() -> None:
    rng = np.random.default_rng(1)
    model = _input_norm()
    good = _site_payload(model, _images(rng, 20, 0))
    missing = Payload({k: v for k, v in good.tensors.items() if not k.startswith("2.")},
                      {"n": 20})
    with pytest.raises(SynthlearnError, match=r"^site 1: batch-norm statistic 2\.running_mean"):
        pool_statistics(model, {0: good, 1: missing})
    broken = Payload({**good.tensors, "0.running_var": torch.full((2,), float("nan"))},
                     {"n": 20})
    with pytest.raises(SynthlearnError, match="^site 4: .*not finite"):
        pool_statistics(model, {0: good, 4: broken})
    with pytest.raises(SynthlearnError, match="^site 0: .*image count"):
        pool_statistics(model, {0: Payload(good.tensors, {"n": "20"})})
