"""What the dp plugin's tests share: the model recipe, a mechanism, tiny data, a private
training run and a tiny gan (helpers, not tests)."""

from __future__ import annotations

import math

import numpy as np
import torch
from synthlearn.api import (
    ImageData,
    PrivateTraining,
    TrainSettings,
    plan_private_training,
    seeded_model,
    train_classifier,
)
from synthlearn.testing import installed
from synthlearn_dp.config import OpacusConfig
from synthlearn_dp.mechanism import OpacusMechanism

#: The recipe model every DP test trains: test_resnet without BatchNorm.
MODEL = {"use": "timm", "params": {"arch": "test_resnet", "norm": "group", "epochs": 2,
                                   "batch_size": 16, "device": "cpu"}}


def opacus_mechanism(**params: object) -> OpacusMechanism:
    """The opacus mechanism with ``params`` (OpacusConfig's)."""
    return OpacusMechanism(OpacusConfig(**params))


def two_class_images(n: int = 48, seed: int = 0) -> ImageData:
    """``n`` 16x16 images of two classes: class 1 has a bright square."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, 1, 16, 16)).astype(np.uint8)
    images[labels == 1, :, 4:12, 4:12] += 150
    return ImageData(images, labels.astype(np.int64))


def timm_network(norm: str) -> torch.nn.Module:
    """timm's test_resnet as the recipe's ``model: {use: timm}`` builds it."""
    spec = installed("model", "timm").spec
    factory = spec.factory(spec.config(arch="test_resnet", norm=norm, device="cpu"))
    return seeded_model(factory, 0, 1, 2, (16, 16))


def train_privately(used: OpacusMechanism, seed: int = 0, epochs: int = 2,
                    sigma: float | None = None, batch_size: int = 12,
                    images: ImageData | None = None, optimizer: str = "adamw"
                    ) -> tuple[torch.Tensor, PrivateTraining]:
    """Train test_resnet (GroupNorm) privately on ``images``; ``epochs=0``: the initial
    weights. Returns the flat weights and the plan (its ``steps`` counted)."""
    images = images if images is not None else two_class_images()
    model = timm_network(norm="group")
    n = len(images)
    steps = max(1, epochs * math.ceil(n / batch_size))
    if sigma is None:
        plan = plan_private_training(used, "opacus", n, batch_size, steps)
    else:
        plan = PrivateTraining(used, "opacus", sigma, batch_size / n, steps)
    if epochs == 0:
        return torch.cat([p.detach().flatten() for p in model.parameters()]), plan
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=0.01, device="cpu",
                             optimizer=optimizer, weight_decay=0.0, schedule="constant")
    train_classifier(model, images, settings, seed, private=plan, progress=False)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), plan


def tiny_gan(**params: object) -> object:
    """A tiny unfitted gan generator (the installed component)."""
    spec = installed("generator", "gan").spec
    return spec.factory(spec.config(**{"steps": 6, "width": 8, "batch_size": 8,
                                       "min_images": 10, **params}))
