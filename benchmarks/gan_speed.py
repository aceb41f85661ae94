"""Training speed of the ``gan`` generator (plugin ``synthlearn-gan``) on CPU.

For each image shape, fits the generator on random smooth images for about
``--seconds`` and prints steps/s (generator updates) and images/s through the
discriminator (each step scores ``batch_size * (2 * d_steps + 1)`` images: real and
fake for each discriminator update, fake again for the generator update), plus the
time the configured ``steps`` would take. Uses the default ``GanConfig`` unless told
otherwise, on ``--threads`` torch threads (2 by default).

    .venv/bin/python benchmarks/gan_speed.py [--shapes 1x28,1x64,3x32] [--seconds 20]
        [--width 64] [--batch-size 64] [--steps 6000]

``--steps`` sets the budget the last column projects (the catphishing template fits
6000 steps; the default is ``GanConfig``'s).
"""

from __future__ import annotations

import argparse
import time

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from synthlearn.data.types import ImageData
from synthlearn.generation.conditioning import Conditions
from synthlearn_gan import GanConfig, GanGenerator


def smooth_images(n: int, channels: int, side: int, seed: int = 0) -> ImageData:
    """``n`` random blurry uint8 images (N, C, side, side) with two classes."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, channels, side // 4, side // 4), np.float32))
    images = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    labels = rng.integers(0, 2, n).astype(np.int64)
    return ImageData(images=(images * 255).round().to(torch.uint8).numpy(), labels=labels)


def timed_fit(config: GanConfig, data: ImageData, steps: int) -> float:
    """Seconds to fit ``steps`` steps (no progress bar)."""
    conditions = Conditions(data.labels, np.zeros((len(data), 0), np.float32))
    generator = GanGenerator(attrs.evolve(config, steps=steps))
    start = time.perf_counter()
    generator.fit(data, conditions, 2, seed=0, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1x28,1x64,3x32",
                        help="comma-separated CxSIDE, e.g. 1x28,3x32")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per shape")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--images", type=int, default=800, help="training images")
    parser.add_argument("--steps", type=int, default=None,
                        help="budget to project the fit time of (default: GanConfig's)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    changes = {"device": "cpu"}
    if args.width is not None:
        changes["width"] = args.width
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.steps is not None:
        changes["steps"] = args.steps
    config = attrs.evolve(GanConfig(), **changes)
    per_step = config.batch_size * (2 * config.d_steps + 1)
    print(f"gan generator on CPU, {args.threads} threads, width {config.width}, "
          f"batch {config.batch_size}, d_steps {config.d_steps}, augment {config.augment}")
    print(f"{'shape':>10} {'steps/s':>8} {'D img/s':>8} {'G img/s':>8} "
          f"{f'{config.steps} steps':>11}")
    for spec in args.shapes.split(","):
        channels, side = (int(v) for v in spec.lower().split("x"))
        data = smooth_images(args.images, channels, side)
        timed_fit(config, data, 2)  # warm-up (first-call overheads)
        probe = timed_fit(config, data, 10)  # a first estimate of the step time
        steps = max(10, int(args.seconds / max(probe / 10, 1e-3)))
        seconds = timed_fit(config, data, steps)
        rate = steps / seconds
        budget = config.steps / rate
        print(f"{f'{channels}x{side}x{side}':>10} {rate:8.2f} {rate * per_step:8.0f} "
              f"{rate * config.batch_size:8.0f} {budget / 60:9.1f} m", flush=True)


if __name__ == "__main__":
    main()
