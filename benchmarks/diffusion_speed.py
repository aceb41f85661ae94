"""Speed of the ``diffusion`` generator (plugin ``synthlearn-diffusion``) on CPU.

Fits the generator (default ``DiffusionConfig`` unless told otherwise) on random smooth
28x28 grey images for ``--fit-steps`` updates and prints updates/s and training
images/s, with the updates a 30-minute budget buys; then samples ``--images`` images at
each of ``--sample-steps`` sampler step counts and prints images/s and the images 5
minutes buy. Runs on ``--threads`` torch threads (1 by default). ``--latent`` times
latent diffusion: the site's autoencoder and the latent UNet separately.

    .venv/bin/python benchmarks/diffusion_speed.py [--side 28] [--channels 1]
        [--fit-steps 30] [--images 64] [--sample-steps 10,20,40] [--width 32]
        [--threads 1] [--latent [--ae-levels 2]]
"""

from __future__ import annotations

import argparse
import time

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from synthlearn.api import Conditions, ImageData
from synthlearn_diffusion import DiffusionConfig, DiffusionGenerator


def smooth_images(n: int, channels: int, side: int, seed: int = 0) -> ImageData:
    """``n`` random blurry uint8 images (N, C, side, side) with two classes."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, channels, side // 4, side // 4), np.float32))
    images = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    labels = rng.integers(0, 2, n).astype(np.int64)
    return ImageData(images=(images * 255).round().to(torch.uint8).numpy(), labels=labels)


def categorical(labels: np.ndarray) -> Conditions:
    return Conditions(labels.astype(np.int64), np.zeros((len(labels), 0), np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--fit-steps", type=int, default=30, help="updates timed")
    parser.add_argument("--images", type=int, default=64, help="images sampled per timing")
    parser.add_argument("--sample-steps", default="10,20,40",
                        help="comma-separated sampler step counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--levels", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--ae-levels", type=int, default=None,
                        help="autoencoder levels with --latent (latent side = side / "
                             "2^(ae_levels-1))")
    parser.add_argument("--latent", action="store_true", help="latent diffusion")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    changes = {k: v for k, v in (("width", args.width), ("levels", args.levels),
                                 ("batch_size", args.batch_size),
                                 ("ae_levels", args.ae_levels)) if v is not None}
    config = attrs.evolve(DiffusionConfig(device="cpu", latent=args.latent), **changes)
    data = smooth_images(512, args.channels, args.side)
    conditions = categorical(data.labels)
    print(f"diffusion generator, {args.channels}x{args.side}x{args.side}, width "
          f"{config.width}, levels {config.levels}, layers_per_block "
          f"{config.layers_per_block}, attention {config.attention}, batch "
          f"{config.batch_size}, latent {config.latent}"
          + (f" (ae_levels {config.ae_levels}: latents of side "
             f"{args.side // 2 ** (config.ae_levels - 1)})" if config.latent else "")
          + f", {args.threads} thread(s)")

    warm = DiffusionGenerator(attrs.evolve(config, steps=2, ae_steps=2))
    warm.fit(data, conditions, 2, seed=0, progress=False)  # imports, first-call costs
    if config.latent:
        generator = DiffusionGenerator(attrs.evolve(config, steps=1, ae_steps=args.fit_steps))
        start = time.perf_counter()
        generator.fit(data, conditions, 2, seed=0, progress=False)
        rate = args.fit_steps / (time.perf_counter() - start)
        print(f"autoencoder: {rate:.2f} updates/s, {rate * config.batch_size:.1f} images/s; "
              f"default ae_steps {config.ae_steps}: {config.ae_steps / rate / 60:.1f} min")
    generator = DiffusionGenerator(attrs.evolve(config, steps=args.fit_steps, ae_steps=1))
    start = time.perf_counter()
    generator.fit(data, conditions, 2, seed=0, progress=False)
    seconds = time.perf_counter() - start
    rate = args.fit_steps / seconds
    print(f"fit: {rate:.2f} updates/s, {rate * config.batch_size:.1f} training images/s; "
          f"30 min = {int(rate * 1800)} updates (default steps {config.steps}: "
          f"{config.steps / rate / 60:.1f} min)")

    labels = np.arange(args.images) % 2
    for steps in (int(s) for s in args.sample_steps.split(",")):
        generator.config = attrs.evolve(config, sample_steps=steps)
        start = time.perf_counter()
        generator.sample(categorical(labels), seed=1, progress=False)
        seconds = time.perf_counter() - start
        per_second = args.images / seconds
        print(f"sample: {steps:3d} steps, guidance {config.guidance}: {per_second:.1f} "
              f"images/s; 5 min = {int(per_second * 300)} images")


if __name__ == "__main__":
    main()
