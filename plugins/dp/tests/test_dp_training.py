"""Training under DP in the core's loop and in the gan: clipping and noise applied,
empty Poisson batches, determinism, steps counted, BatchNorm named."""

from __future__ import annotations

import pytest

pytest.importorskip("opacus", reason="opacus (a dependency of synthlearn-dp) is not installed")
pytest.importorskip("synthlearn_dp", reason="the synthlearn-dp plugin is not installed")

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from dp_helpers import (  # noqa: E402
    opacus_mechanism,
    timm_network,
    tiny_gan,
    train_privately,
    two_class_images,
)


def test_private_training_is_deterministic_counts_its_steps_and_reports_them() -> None:
    mechanism = opacus_mechanism(target_epsilon=8.0)
    a, plan = train_privately(mechanism)
    b, _ = train_privately(mechanism)
    c, _ = train_privately(mechanism, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert plan.steps == plan.planned_steps == 8
    record = plan.record()
    assert record["epsilon"] == pytest.approx(plan.epsilon(8)) and record["epsilon"] <= 8.0
    assert record["final_max_grad_norm"] == 1.0 and record["steps"] == 8
    json.dumps(record)  # what a site sends is JSON


def test_clipping_bounds_each_step_and_the_noise_is_added() -> None:
    init, _ = train_privately(opacus_mechanism(), sigma=0.0, epochs=0)

    def moved(max_grad_norm: float, sigma: float) -> float:
        mechanism = opacus_mechanism(target_epsilon=None, noise_multiplier=1.0,
                               max_grad_norm=max_grad_norm)
        weights, _ = train_privately(mechanism, sigma=sigma, epochs=1, optimizer="sgd")
        return float((weights - init).abs().max())

    # plain SGD (momentum 0.9, no weight decay), lr 0.01, 4 steps: a step moves a weight
    # by at most lr * the clipped mean gradient's norm, times the momentum's sum
    assert moved(1e-6, 0.0) < 0.01 * 1e-6 * 4 * 10
    assert moved(10.0, 0.0) > 1e-3  # the same steps with a loose bound move the weights
    # noise of std sigma * bound / batch = 5 * 10 / 12 per coordinate dwarfs the signal
    assert moved(10.0, 5.0) > 10 * moved(10.0, 0.0)


def test_empty_poisson_batches_still_take_a_noise_step() -> None:
    for clipping in ("flat", "adaptive"):
        mechanism = opacus_mechanism(target_epsilon=None, noise_multiplier=1.0, clipping=clipping,
                               unclipped_num_std=5.0)
        weights, plan = train_privately(mechanism, sigma=1.0, batch_size=1, epochs=3,
                               images=two_class_images(n=6))  # q = 1/6: about 1 step in 3 is empty
        assert plan.steps == 18
        assert torch.isfinite(weights).all()


def test_a_batchnorm_model_is_named_as_unsupported() -> None:
    model = timm_network(norm="batch")
    problems = opacus_mechanism().unsupported(model, (1, 16, 16))
    assert problems and "BatchNorm" in problems[0]
    grouped = timm_network(norm="group")
    assert opacus_mechanism(clipping="adaptive").unsupported(grouped, (1, 16, 16)) == []



def test_the_gan_fits_under_dp_deterministically_and_counts_its_discriminator_steps() -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    from synthlearn.api import PrivateTraining
    from synthlearn.testing import class_conditions

    data = two_class_images(n=40)
    conditions = class_conditions(data.labels)

    def fit(private: bool, seed: int = 0) -> tuple[np.ndarray, object]:
        gan = tiny_gan(d_steps=2)
        plan = None
        if private:
            batch, steps = gan.dp_steps(len(data))
            assert (batch, steps) == (8, 6 * 2)
            plan = PrivateTraining(opacus_mechanism(), "opacus", 1.0, batch / len(data), steps)
        gan.fit(data, conditions, 2, seed, progress=False,
                **({"private": plan} if plan else {}))
        return gan.sample(class_conditions(np.arange(8) % 2), 0), plan

    a, plan = fit(True)
    b, _ = fit(True)
    c, _ = fit(True, seed=1)
    plain, _ = fit(False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, plain)
    assert plan.steps == plan.planned_steps == 12

