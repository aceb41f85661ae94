"""The ``label-match`` filter (Trichotomy's selection): reject a synthetic candidate that
a classifier the site trains on its own images does not take for its label.

Trichotomy keeps, among candidates for one condition, the one that best matches the
label; with the core's redraw (``synthlearn.generation.filtering``) a rejected
candidate is drawn again for the same condition, so rejecting the poor matches keeps
the good ones. Two small classifiers are trained, each on one half of the site's images
(split within each class); each image of the other half gives a held-out probability of
its own label. The threshold is the ``miss_rate`` quantile of those probabilities, so a
real image of the site would be rejected with probability about ``miss_rate``. A
candidate is screened by the mean of the two classifiers' probabilities of its label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn as nn

from synthlearn import notices
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.filters.reid import conv_features
from synthlearn.models.training import (
    TrainSettings,
    predict_proba,
    resolve_device,
    train_classifier,
)
from synthlearn.params import device_name, in_open_unit, int_at_least
from synthlearn.sitework.sites import Site

#: The reason ``screen`` gives for a rejected candidate.
REASON = "label-mismatch"


@attrs.frozen
class LabelMatchConfig:
    """Two small classifiers, each trained on half of the site's images; a candidate
    whose label they give a lower probability than the ``miss_rate`` quantile of the
    site's own held-out images is rejected."""

    epochs: int = attrs.field(
        default=20, validator=int_at_least(1),
        metadata={"doc": "training epochs of each of the two classifiers"})
    batch_size: int = attrs.field(
        default=64, validator=int_at_least(1), metadata={"doc": "images per step"})
    width: int = attrs.field(
        default=16, validator=int_at_least(4),
        metadata={"doc": "channels of the classifiers' first convolution"})
    lr: float = attrs.field(
        default=2e-3, validator=attrs.validators.gt(0.0),
        metadata={"doc": "AdamW learning rate"})
    miss_rate: float = attrs.field(
        default=0.05, validator=in_open_unit,
        metadata={"doc": "share of the site's own held-out images the threshold would reject "
                         "(the threshold is this quantile of their label's probability)"})
    min_images: int = attrs.field(
        default=8, validator=int_at_least(2),
        metadata={"doc": "fewest images of each class a site needs (half train each "
                         "classifier)"})
    device: str = attrs.field(
        default="auto", validator=device_name,
        metadata={"doc": "`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`"})


class SmallClassifier(nn.Module):
    """The filter's classifier: the shared convolutional stack and a linear head."""

    def __init__(self, in_chans: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.features, size = conv_features(in_chans, width)
        self.head = nn.Linear(size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index sets splitting each class's images in half, at random."""
    rng = np.random.default_rng(seed)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for c in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == c))
        first.append(index[: len(index) // 2])
        second.append(index[len(index) // 2:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


class LabelMatchFilter:
    """Label-match screening of synthetic candidates (kind ``filter``)."""

    def __init__(self, config: LabelMatchConfig) -> None:
        self.config = config
        self._models: list[nn.Module] = []
        self._num_classes = 0
        self._facts: dict[str, Any] = {}

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Every class a site holds needs ``min_images`` images."""
        resolve_device(self.config.device)
        for site in sites:
            counts = np.bincount(site.data.labels)
            short = [c for c, n in enumerate(counts) if 0 < n < self.config.min_images]
            if short:
                raise SynthlearnError(
                    f"site {site.id} has {counts[short[0]]} image(s) of class {short[0]}; "
                    f"the label-match filter needs at least {self.config.min_images} of each "
                    "class it holds (params.min_images)")

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        """Train the two classifiers on halves of the site's images and set the
        threshold from each half's probabilities under the other half's classifier."""
        cfg = self.config
        counts = np.bincount(real.labels)
        if len(real) < 2 or any(0 < n < cfg.min_images for n in counts):
            raise SynthlearnError(f"{len(real)} images, {counts.tolist()} per class; the "
                                  f"label-match filter needs at least {cfg.min_images} of "
                                  "each class (params.min_images)")
        self._num_classes = len(counts)
        settings = TrainSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                 device=cfg.device)
        device = resolve_device(cfg.device)
        held_out = np.empty(len(real))
        correct = np.empty(len(real), dtype=bool)
        folds = halves(real.labels, seed)
        self._models = []
        for part, (train, test) in enumerate((folds, folds[::-1])):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + part)
                model = SmallClassifier(real.images.shape[1], cfg.width, self._num_classes)
            train_classifier(model, real.subset(train), settings, seed + part,
                             progress=progress, desc=f"label-match filter: half {part + 1}")
            probs = predict_proba(model, real.images[test], device=device)
            held_out[test] = probs[np.arange(len(test)), real.labels[test]]
            correct[test] = probs.argmax(1) == real.labels[test]
            self._models.append(model.cpu().eval())
        threshold = float(np.quantile(held_out, cfg.miss_rate))
        majority = float(counts.max() / counts.sum())
        if correct.mean() <= majority + 0.02:
            notices.warn(f"the label-match filter's classifiers do no better on held-out "
                         f"site images ({correct.mean():.0%} right) than always naming the "
                         f"largest class ({majority:.0%}): its screening means little; train "
                         "them longer (params.epochs) or drop the filter")
        self._facts = {
            "threshold": threshold,
            "miss_rate": cfg.miss_rate,
            "held_out_accuracy": float(correct.mean()),
            "held_out_median": float(np.median(held_out)),
        }

    def label_probability(self, candidates: ImageData) -> np.ndarray:
        """The mean probability the two classifiers give each candidate's label (0 for a
        label the site has no images of)."""
        if not self._models:
            raise SynthlearnError("the label-match filter has not been fitted")
        labels = np.asarray(candidates.labels)
        known = labels < self._num_classes
        probs = np.mean([predict_proba(m, candidates.images) for m in self._models], axis=0)
        out = np.zeros(len(labels))
        out[known] = probs[np.flatnonzero(known), labels[known]]
        return out

    def screen(self, candidates: ImageData) -> list[str | None]:
        """``label-mismatch`` for each candidate whose label is less likely than the
        threshold."""
        if not len(candidates):
            return []
        p = self.label_probability(candidates)
        return [REASON if value < self._facts["threshold"] else None for value in p]

    def describe(self) -> Mapping[str, Any]:
        """The threshold, the miss rate it was set for, and the held-out accuracy and
        median probability of the site's own labels."""
        return dict(self._facts)
