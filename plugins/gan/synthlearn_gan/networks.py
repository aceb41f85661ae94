"""The two networks: a conditional DCGAN generator and a projection discriminator.

An image side must be ``b * 2**k`` with ``b`` in 4..7 and ``k >= 1`` (16, 28, 32, 64,
128...). The generator maps noise, a class embedding and the condition vector through a
linear layer to a ``b x b`` map, then ``k`` upsampling blocks double the side; the
discriminator's ``k`` blocks (a strided 4x4 and a 3x3 convolution each) bring it back to
``b x b``, where a minibatch standard-deviation feature lets it see a lack of variety.
Channels are ``width`` at full resolution and double at each halving, capped at
``MAX_MULT * width``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

#: Channels never exceed this multiple of ``width``.
MAX_MULT = 8

#: Slope of the discriminator's leaky ReLUs.
LEAK = 0.2


def factor_side(side: int) -> tuple[int, int] | None:
    """``(b, k)`` with ``side == b * 2**k``, ``4 <= b <= 7`` and ``k >= 1``, else None."""
    if side < 8:
        return None
    k = 0
    while side > 7 and side % 2 == 0:
        side //= 2
        k += 1
    return (side, k) if 4 <= side <= 7 and k >= 1 else None


def _normed(spectral: bool) -> Callable[[nn.Module], nn.Module]:
    """``spectral_norm`` (a reparametrisation of the weight), or the layer as it is:
    under DP the norm is kept by ``SpectralProjection`` instead (Opacus cannot take
    per-example gradients through a parametrised weight)."""
    return spectral_norm if spectral else (lambda module: module)


class SpectralProjection:
    """Keeps the discriminator's layers at spectral norm 1 by projection: after each
    optimizer step every conv, linear and embedding weight is divided by its largest
    singular value, estimated by one power iteration per call from a vector kept per
    layer (as ``spectral_norm`` does). Used under DP, where the weights the noisy step
    produced are only post-processed (it costs no privacy)."""

    def __init__(self, net: nn.Module, seed: int) -> None:
        rng = torch.Generator().manual_seed(seed)
        self.layers = [m for m in net.modules()
                       if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
        self.vectors = [F.normalize(torch.randn(m.weight.shape[0], generator=rng), dim=0)
                        .to(m.weight.device) for m in self.layers]
        for _ in range(10):  # settle the estimates before the first step
            self.project(update_only=True)
        self.project()

    @torch.no_grad()
    def project(self, update_only: bool = False) -> None:
        """One power iteration per layer, then (unless ``update_only``) the division."""
        for i, layer in enumerate(self.layers):
            matrix = layer.weight.reshape(layer.weight.shape[0], -1)
            v = F.normalize(matrix.t() @ self.vectors[i], dim=0)
            u = F.normalize(matrix @ v, dim=0)
            self.vectors[i] = u
            if not update_only:
                layer.weight.div_(torch.dot(u, matrix @ v).clamp_min(1e-12))


def channel_plan(width: int, k: int) -> list[int]:
    """Channels from the ``b x b`` map (index 0) to full resolution (index ``k``)."""
    return [min(width * 2 ** (k - i), MAX_MULT * width) for i in range(k + 1)]


class UpBlock(nn.Module):
    """Nearest-neighbour x2 upsampling, 3x3 convolution, batch norm, ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, s, s) -> (B, c_out, 2s, 2s)."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class GanGeneratorNet(nn.Module):
    """``G(z, label, vector)``: images in [-1, 1] with shape ``image_shape`` (C, H, W)."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, vector_size: int,
                 latent_dim: int, width: int) -> None:
        super().__init__()
        channels, side, _ = image_shape
        factors = factor_side(side)
        if factors is None:
            raise ValueError(f"unsupported image side {side}")
        base, k = factors
        plan = channel_plan(width, k)
        self.latent_dim = latent_dim
        self.base = base
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.fc = nn.Linear(2 * latent_dim + vector_size, plan[0] * base * base, bias=False)
        self.fc_norm = nn.BatchNorm2d(plan[0])
        self.blocks = nn.Sequential(*[UpBlock(plan[i], plan[i + 1]) for i in range(k)])
        self.out = nn.Conv2d(plan[-1], channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor
                ) -> torch.Tensor:
        """z (B, latent_dim), labels int64 (B,), vectors (B, D) -> (B, C, H, W)."""
        h = torch.cat([z, self.embed(labels), vectors.to(z.dtype)], dim=1)
        h = self.fc(h).view(len(z), -1, self.base, self.base)
        h = self.blocks(F.relu(self.fc_norm(h)))
        return torch.tanh(self.out(h))


def minibatch_std(h: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the standard deviation of the features over each group of
    ``group`` consecutive samples, averaged (Karras et al. 2018). A collapsed generator
    makes it small, so the discriminator can see a lack of variety."""
    n, c, height, width = h.shape
    g = group if group > 1 and n % group == 0 else 1
    if g == 1:
        stat = h.new_zeros(n, 1, height, width)
    else:
        grouped = h.contiguous().reshape(n // g, g, c, height, width)
        centered = grouped - grouped.mean(dim=1, keepdim=True)
        std = (centered.square().mean(dim=1) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        stat = std.repeat_interleave(g)[:, None, None, None].expand(n, 1, height, width)
    return torch.cat([h, stat.to(h.dtype)], dim=1)


class DownBlock(nn.Module):
    """Spectral-normed 4x4 stride-2 convolution, then a 3x3 convolution, each followed
    by a leaky ReLU: halves the side."""

    def __init__(self, c_in: int, c_out: int, spectral: bool = True) -> None:
        super().__init__()
        normed = _normed(spectral)
        self.down = normed(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
        self.conv = normed(nn.Conv2d(c_out, c_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, 2s, 2s) -> (B, c_out, s, s)."""
        x = F.leaky_relu(self.down(x), LEAK)
        return F.leaky_relu(self.conv(x), LEAK)


class ProjectionDiscriminator(nn.Module):
    """``D(x, label, vector)``: one real-valued score per image.

    Spectral-normed convolutions bring the image to ``b x b``; a 3x3 convolution over
    those features plus their minibatch standard deviation (over groups of ``group``
    consecutive samples) gives ``h`` after sum pooling, and the score is
    ``linear(h) + <embed(label), h> + <W vector, h>``. Set ``group`` to a divisor of the
    batch size so that a group never mixes real and fake images. ``spectral=False``
    builds the same layers without the spectral-norm reparametrisation (for DP, with
    ``SpectralProjection``).
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, vector_size: int,
                 width: int, spectral: bool = True) -> None:
        super().__init__()
        channels, side, _ = image_shape
        factors = factor_side(side)
        if factors is None:
            raise ValueError(f"unsupported image side {side}")
        _, k = factors
        plan = channel_plan(width, k)
        normed = _normed(spectral)
        self.stem = normed(nn.Conv2d(channels, plan[k], 3, padding=1))
        self.down = nn.ModuleList(DownBlock(plan[i], plan[i - 1], spectral)
                                  for i in range(k, 0, -1))
        self.group = 1
        self.mbstd = normed(nn.Conv2d(plan[0] + 1, plan[0], 3, padding=1))
        self.head = normed(nn.Linear(plan[0], 1))
        self.embed = normed(nn.Embedding(num_classes, plan[0]))
        self.project = (normed(nn.Linear(vector_size, plan[0], bias=False))
                        if vector_size > 0 else None)

    def forward(self, x: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor
                ) -> torch.Tensor:
        """x (B, C, H, W), labels (B,), vectors (B, D) -> scores (B,)."""
        h = F.leaky_relu(self.stem(x), LEAK)
        for block in self.down:
            h = block(h)
        h = F.leaky_relu(self.mbstd(minibatch_std(h, self.group)), LEAK)
        h = h.sum(dim=(2, 3))
        # labels as a column: per-example gradients (DP) need a batch dimension and more
        embedded = self.embed(labels.reshape(-1, 1))[:, 0]
        score = self.head(h).squeeze(1) + (embedded * h).sum(dim=1)
        if self.project is not None:
            score = score + (self.project(vectors.to(h.dtype)) * h).sum(dim=1)
        return score
