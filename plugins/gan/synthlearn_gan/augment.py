"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for GAN training.

The same random transforms are applied to real and fake images before the
discriminator, and gradients flow through them to the generator, so the discriminator
cannot memorise a small training set while the generator still learns the un-augmented
distribution. Random numbers come from a CPU ``torch.Generator`` so a run does not
depend on the device's RNG.
"""

from __future__ import annotations

import torch

#: Largest translation, as a fraction of the image side.
TRANSLATE = 0.125

#: Side of the cutout square, as a fraction of the image side.
CUTOUT = 0.5

#: Largest brightness shift (images in [-1, 1]) and contrast change (x 1 +- CONTRAST).
BRIGHTNESS = 0.5
CONTRAST = 0.5


def _uniform(n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1, 1) uniform [0, 1) numbers on ``like``'s device and dtype."""
    return torch.rand(n, 1, 1, 1, generator=generator).to(like.device, like.dtype)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random brightness (+-0.5), contrast (x0.5..1.5) and, for colour images,
    saturation (x0..2); images in [-1, 1]."""
    n = len(x)
    x = x + (_uniform(n, generator, x) * 2.0 - 1.0) * BRIGHTNESS
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1.0 + (_uniform(n, generator, x) * 2.0 - 1.0) * CONTRAST) + mean
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(n, generator, x) * 2.0) + mean
    return x


def translate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``TRANSLATE`` of its side in each direction; the
    uncovered border is zero."""
    n, _, h, w = x.shape
    sy, sx = max(1, round(h * TRANSLATE)), max(1, round(w * TRANSLATE))
    dy = torch.randint(-sy, sy + 1, (n, 1), generator=generator).to(x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1), generator=generator).to(x.device)
    padded = torch.nn.functional.pad(x, (sx, sx, sy, sy)).permute(0, 2, 3, 1)  # N,H,W,C
    rows = torch.arange(h, device=x.device) + sy - dy  # (N, H)
    cols = torch.arange(w, device=x.device) + sx - dx  # (N, W)
    index = torch.arange(n, device=x.device)[:, None, None]
    return padded[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero one square of side ``CUTOUT`` of the image at a random place per image."""
    n, _, h, w = x.shape
    ch, cw = max(1, round(h * CUTOUT)), max(1, round(w * CUTOUT))
    cy = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), generator=generator).to(x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    r, c = rows - cy + ch // 2, cols - cx + cw // 2
    inside = (r >= 0) & (r < ch) & (c >= 0) & (c < cw)
    return x * (~inside).to(x.dtype)[:, None]


def diff_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Colour, translation and cutout, in that order, with fresh randomness per image."""
    return cutout(translate(color(x, generator), generator), generator)
