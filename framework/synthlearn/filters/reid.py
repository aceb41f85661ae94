"""The ``reid`` filter (Trichotomy): a re-identification embedding the site trains on
its own images rejects synthetic candidates that it matches to one of them.

No patient identities are needed: the site trains a small convolutional embedding
contrastively (NT-Xent), two augmented views of one image being "the same patient" and
views of different images "different". The augmentations stand for what changes
between two acquisitions of one patient: a small shift, scale and rotation, contrast,
brightness, noise and (``flip``) a mirror image.

Calibration, on held-in pairs: every site image is compared with an augmented view of
itself (a *same* pair) and with its most similar other site image. The threshold is the
``miss_rate`` quantile of the same pairs' cosine similarities, so an augmented copy of a
site image is rejected with probability ``1 - miss_rate``; ``false_match_rate`` (the
share of site images matched to another site image at that threshold) says how often a
genuinely new image would be rejected. A candidate whose closest site image is at least
that similar is rejected with reason ``reid``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.models.training import resolve_device, to_float
from synthlearn.params import device_name, in_open_unit, int_at_least
from synthlearn.sitework.sites import Site

#: The reason ``screen`` gives for a rejected candidate.
REASON = "reid"

#: Images per forward pass when embedding.
EMBED_BATCH = 512


@attrs.frozen
class ReidConfig:
    """A re-identification embedding the site trains contrastively on its own images (two
    mild augmentations of one image are the same patient); a candidate at least as
    similar to a site image as the ``miss_rate`` quantile of the site images' similarity
    to an augmented view of themselves is rejected."""

    steps: int = attrs.field(
        default=600, validator=int_at_least(1),
        metadata={"doc": "contrastive training steps of the embedding"})
    batch_size: int = attrs.field(
        default=64, validator=int_at_least(2),
        metadata={"doc": "images per contrastive batch (each gives two augmented views)"})
    embed_dim: int = attrs.field(
        default=64, validator=int_at_least(2),
        metadata={"doc": "size of the (unit-length) embedding"})
    width: int = attrs.field(
        default=32, validator=int_at_least(4),
        metadata={"doc": "channels of the embedding network's first convolution"})
    lr: float = attrs.field(
        default=1e-3, validator=attrs.validators.gt(0.0),
        metadata={"doc": "AdamW learning rate"})
    temperature: float = attrs.field(
        default=0.1, validator=attrs.validators.gt(0.0),
        metadata={"doc": "NT-Xent temperature"})
    miss_rate: float = attrs.field(
        default=0.05, validator=in_open_unit,
        metadata={"doc": "share of augmented copies of a site image the threshold lets "
                         "through (the threshold is this quantile of their similarity)"})
    shift: float = attrs.field(
        default=0.05, validator=attrs.validators.and_(attrs.validators.ge(0.0),
                                                     attrs.validators.lt(0.5)),
        metadata={"doc": "largest shift of an augmented view, as a share of the side"})
    flip: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool),
        metadata={"doc": "a mirrored image counts as the same patient (off: a mirrored chest "
                         "X-ray is no second acquisition)"})
    min_images: int = attrs.field(
        default=16, validator=int_at_least(2),
        metadata={"doc": "fewest images a site needs to train the embedding"})
    device: str = attrs.field(
        default="auto", validator=device_name,
        metadata={"doc": "`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`"})


def conv_features(in_chans: int, width: int) -> tuple[nn.Sequential, int]:
    """The small convolutional stack a site's filter networks share: four 3x3
    convolutions (GroupNorm, ReLU; the last three halve the side), then a global average:
    ``(module, output size)``."""
    channels = [in_chans, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:], strict=False)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1),
                   nn.GroupNorm(min(8, c_out), c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels[-1]


class ReidNet(nn.Module):
    """A small convolutional embedding: unit-length vectors of ``embed_dim``."""

    def __init__(self, in_chans: int, width: int, embed_dim: int) -> None:
        super().__init__()
        self.features, size = conv_features(in_chans, width)
        self.head = nn.Sequential(nn.Linear(size, size), nn.ReLU(inplace=True),
                                  nn.Linear(size, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1)


def augment(x: torch.Tensor, rng: torch.Generator, *, shift: float, flip: bool
            ) -> torch.Tensor:
    """A random view of each image of ``x`` (float, [-1, 1]), drawn from ``rng``: a shift
    of up to ``shift`` of the side, a scale of 0.95..1.05 and a rotation of up to 5
    degrees, contrast 0.9..1.1, brightness ±0.05, pixel noise (σ 0.02) and (``flip``) a
    mirror. Mild on purpose: stronger views make distinct images of one class look like
    one patient."""
    n = len(x)

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=rng) * (high - low) + low

    angle = uniform(-5.0, 5.0) * math.pi / 180.0
    scale = uniform(0.95, 1.05)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, uniform(-2 * shift, 2 * shift)], 1),
                         torch.stack([sin, cos, uniform(-2 * shift, 2 * shift)], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if flip:
        mirror = (torch.rand(n, generator=rng) < 0.5).to(x.device)
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    contrast = uniform(0.9, 1.1).to(x)[:, None, None, None]
    brightness = uniform(-0.05, 0.05).to(x)[:, None, None, None]
    noise = torch.randn(out.shape, generator=rng).to(x) * 0.02
    return (out * contrast + brightness + noise).clamp(-1.0, 1.0)


def _nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """Contrastive loss of 2B unit vectors whose rows i and i + B are two views of one
    image."""
    n = len(z) // 2
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


class ReidFilter:
    """Re-identification screening of synthetic candidates (kind ``filter``)."""

    def __init__(self, config: ReidConfig) -> None:
        self.config = config
        self._net: ReidNet | None = None
        self._real: torch.Tensor | None = None
        self._facts: dict[str, Any] = {}

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Every site needs ``min_images`` images to train the embedding."""
        resolve_device(self.config.device)
        for site in sites:
            if len(site.data) < self.config.min_images:
                raise SynthlearnError(f"site {site.id} has {len(site.data)} images; the reid "
                                      f"filter needs at least {self.config.min_images} "
                                      "(params.min_images)")

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        """Train the embedding on the site's images and calibrate the threshold."""
        cfg = self.config
        n = len(real)
        if n < max(2, cfg.min_images):
            raise SynthlearnError(f"{n} images; the reid filter needs at least "
                                  f"{cfg.min_images} (params.min_images)")
        device = resolve_device(cfg.device)
        images = to_float(np.ascontiguousarray(real.images))
        rng = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ReidNet(images.shape[1], cfg.width, cfg.embed_dim).to(device)
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        batch = min(cfg.batch_size, n)
        bar = tqdm(range(cfg.steps), desc="reid filter: train embedding",
                   disable=not progress, leave=False, file=sys.stderr)
        net.train()
        order = torch.randperm(n, generator=rng)
        start = 0
        for step in bar:
            if start + batch > n:  # every image once per pass, a fresh order each pass
                order, start = torch.randperm(n, generator=rng), 0
            x = images[order[start:start + batch]]
            start += batch
            views = torch.cat([augment(x, rng, shift=cfg.shift, flip=cfg.flip),
                               augment(x, rng, shift=cfg.shift, flip=cfg.flip)])
            loss = _nt_xent(net(views.to(device)), cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 20 == 0 or step == cfg.steps - 1:
                if not torch.isfinite(loss):
                    bar.close()
                    raise SynthlearnError(f"the reid embedding's training diverged by step "
                                          f"{step + 1}: try a lower lr")
                if progress:
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        self._net = net.eval()
        self._real = self._embed(images)
        views = self._embed(augment(images, rng, shift=cfg.shift, flip=cfg.flip))
        same = (views * self._real).sum(1)
        other = self._real @ self._real.T
        other.fill_diagonal_(float("-inf"))
        closest_other = other.max(1).values
        threshold = float(torch.quantile(same, cfg.miss_rate))
        self._facts = {
            "threshold": threshold,
            "miss_rate": cfg.miss_rate,
            "false_match_rate": float((closest_other >= threshold).float().mean()),
            "same_median": float(same.median()),
            "closest_other_median": float(closest_other.median()),
        }

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        assert self._net is not None
        device = next(self._net.parameters()).device
        return torch.cat([self._net(images[i:i + EMBED_BATCH].to(device)).cpu()
                          for i in range(0, len(images), EMBED_BATCH)])

    def _require_fit(self) -> None:
        if self._net is None or self._real is None:
            raise SynthlearnError("the reid filter has not been fitted")

    def best_similarity(self, candidates: ImageData) -> np.ndarray:
        """Each candidate's highest cosine similarity to a site image, in the embedding."""
        self._require_fit()
        embedded = self._embed(to_float(np.ascontiguousarray(candidates.images)))
        return (embedded @ self._real.T).max(1).values.numpy()

    def screen(self, candidates: ImageData) -> list[str | None]:
        """``reid`` for each candidate the embedding matches to a site image."""
        self._require_fit()
        if not len(candidates):
            return []
        best = self.best_similarity(candidates)
        return [REASON if s >= self._facts["threshold"] else None for s in best.tolist()]

    def describe(self) -> Mapping[str, Any]:
        """The threshold and its calibration: the miss rate on augmented copies, the
        false-match rate between distinct site images, and the median similarities."""
        return dict(self._facts)
