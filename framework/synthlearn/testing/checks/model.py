"""``check_model``: the contract of kind ``model``."""

from __future__ import annotations

import json
from typing import Any

import attrs
import numpy as np
import torch

from synthlearn.data.types import Dataset
from synthlearn.models.training import TrainSettings, predict_logits, train_classifier
from synthlearn.sitework.sites import seeded_model
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.recipes import tiny_dataset

__all__ = ["check_model"]

#: (in_chans, num_classes, image_size) the network must be buildable for.
SHAPES = ((1, 2, (16, 16)), (3, 5, (16, 16)), (1, 3, (28, 28)))


def check_model(factory: Any, *, dataset: Dataset | None = None, seed: int = 0) -> None:
    """Check a model factory object (what a ``model`` component's factory returns)
    against the ``ModelFactory`` contract. Its rules:

    * ``protocol``: it has ``training``, ``build`` and ``describe``;
    * ``training is TrainSettings``;
    * ``build gives a network``: ``build(in_chans, num_classes, image_size)`` returns a
      ``torch.nn.Module`` for 1 and 3 channels, 2 to 5 classes, 16 and 28 pixels;
    * ``outputs are (N, num_classes) finite floats`` on blank and random images;
    * ``build is seeded``: two builds under one torch seed have the same weights;
    * ``describe is JSON``: ``describe()`` after a build is a JSON-able mapping;
    * ``trains``: one epoch of ``train_classifier`` with its settings on tiny phantom
      data (``dataset``) runs and leaves finite outputs.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_model", factory)
    rules.protocol(factory, ("build", "describe"), ("training",))
    rules.require(isinstance(factory.training, TrainSettings), "training is TrainSettings",
                  f"training is {type(factory.training).__name__}")
    for in_chans, classes, size in SHAPES:
        where = f"build({in_chans}, {classes}, {size})"
        with rules.rule("build gives a network"):
            net = seeded_model(factory, seed, in_chans, classes, size)
        rules.require(isinstance(net, torch.nn.Module), "build gives a network",
                      f"{where} returned {type(net).__name__}")
        images = np.random.default_rng(seed).integers(0, 256, (3, in_chans, *size),
                                                      dtype=np.uint8)
        images[0] = 0
        with rules.rule("outputs are (N, num_classes) finite floats"):
            out = predict_logits(net, images, device="cpu")
        rules.require(out.shape == (3, classes) and np.isfinite(out).all(),
                      "outputs are (N, num_classes) finite floats",
                      f"{where} gives outputs of shape {out.shape} "
                      f"(finite: {bool(np.isfinite(out).all())}) for 3 images")
        twin = seeded_model(factory, seed, in_chans, classes, size)
        same = all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                     twin.state_dict().values(), strict=True))
        rules.require(same, "build is seeded",
                      f"two {where} under torch seed {seed} have different weights")
    with rules.rule("describe is JSON"):
        described = factory.describe()
        rules.require(isinstance(described, dict) or hasattr(described, "items"),
                      "describe is JSON", f"describe() returned {type(described).__name__}")
        json.dumps(dict(described))

    data = dataset if dataset is not None else tiny_dataset(n_train=64, n_test=16)
    settings = attrs.evolve(factory.training, epochs=1, device="cpu")
    net = seeded_model(factory, seed, data.channels, data.num_classes, data.image_size)
    with rules.rule("trains"):
        train_classifier(net, data.train, settings, seed, progress=False, desc="check_model")
        out = predict_logits(net, data.test.images, device="cpu")
        rules.require(np.isfinite(out).all(), "trains",
                      "outputs are not finite after one epoch of training")
