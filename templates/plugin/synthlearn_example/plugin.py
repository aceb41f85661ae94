"""Example plugin: registers a model ``tiny_cnn`` and a generator ``class_gaussian``
that any recipe can use.

    model: {use: tiny_cnn, params: {width: 16, epochs: 3}}
    arms:
      - use: synthetic
        generator: {use: class_gaussian, params: {components: 8}}

A plugin is a module with ``@hookimpl`` functions named after hooks in
``synthlearn.hookspecs``. Each registration hook returns ``ComponentSpec``s: a name, an
attrs config class (the recipe's ``params:`` are checked against it), a factory, and a
one-line summary. The factory's product must offer what its kind's Protocol in
``synthlearn.api`` asks:
for ``tiny_cnn`` (below) ``ModelFactory``: ``training``, ``build(...)``, ``describe()``;
for ``class_gaussian`` (``generator.py``) ``Generator``: ``check``, ``fit``, ``sample``,
``state``, ``load``. Import only from ``synthlearn`` and ``synthlearn.api``: the rest
of synthlearn is internal and may change.
"""

from __future__ import annotations

import attrs
import torch.nn as nn
from synthlearn import ComponentSpec, hookimpl
from synthlearn.api import TrainSettings

from synthlearn_example.generator import ClassGaussianConfig, ClassGaussianGenerator


@attrs.define(frozen=True)
class TinyCNNConfig:
    """Params of ``tiny_cnn``: its width and how to train it."""

    width: int = 16
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-3
    device: str = "auto"


class TinyCNN:
    """Two conv blocks and a linear head: quick to train on small images."""

    def __init__(self, config: TinyCNNConfig) -> None:
        if config.width < 1:
            raise ValueError(f"width must be positive, got {config.width}")
        self.config = config
        self.training = TrainSettings(epochs=config.epochs, batch_size=config.batch_size,
                                      lr=config.lr, device=config.device)

    def build(self, in_chans: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
        w = self.config.width
        return nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, num_classes),
        )

    def describe(self) -> dict[str, object]:
        return {"arch": "tiny_cnn", "width": self.config.width}


@hookimpl
def synthlearn_register_models() -> list[ComponentSpec]:
    return [ComponentSpec("tiny_cnn", TinyCNNConfig, TinyCNN,
                          "two conv blocks and a linear head (example plugin)")]


@hookimpl
def synthlearn_register_generators() -> list[ComponentSpec]:
    return [ComponentSpec("class_gaussian", ClassGaussianConfig, ClassGaussianGenerator,
                          "per-class Gaussian over pixels, low-rank by PCA (example plugin)")]
