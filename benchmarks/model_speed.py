"""Speed and accuracy of timm classifiers on small images, per stem variant.

Trains each architecture on scikit-learn's digits (8x8, upscaled to ``--size``) and
prints, per (arch, stem): parameter count, training and evaluation images/s on the
current device, and test accuracy after ``--epochs`` epochs.

Stems (see ``synthlearn.models.timm_model``): ``imagenet`` (timm's network unchanged),
``small`` (first strided conv -> 3x3 stride 1, stem max-pool kept: one stride-2 left)
and ``full`` (the max-pool removed too: full resolution into the first stage).
``--data strokes`` is a phantom-like task that needs fine detail (a 3 px stroke's
orientation); ``digits`` are 8x8 at heart, so even a coarse stem does well on them.

    .venv/bin/python benchmarks/model_speed.py [--archs resnet18,resnet10t] [--size 28]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from synthlearn.data.types import ImageData
from synthlearn.evaluation.metrics import classification_metrics
from synthlearn.models.timm_model import TimmConfig, TimmModel
from synthlearn.models.training import (
    TrainSettings,
    predict_proba,
    resolve_device,
    train_classifier,
)


def digits(size: int) -> tuple[ImageData, ImageData]:
    """scikit-learn digits as uint8 (N, 1, size, size), split 75/25 stratified."""
    bunch = load_digits()
    small = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    labels = bunch.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=0
    )
    data = ImageData(images=images, labels=labels)
    return data.subset(train), data.subset(test)


def strokes(size: int, n_train: int = 2000, n_test: int = 1000) -> tuple[ImageData, ImageData]:
    """A phantom-like task that needs fine detail: a noisy blob holding a 3 px stroke
    whose orientation (horizontal, vertical, diagonal, anti-diagonal) is the class."""
    rng = np.random.default_rng(0)
    n = n_train + n_test
    yy, xx = np.mgrid[:size, :size]
    centre = rng.uniform(0.35 * size, 0.65 * size, (n, 2))
    radius = rng.uniform(0.25 * size, 0.4 * size, (n, 1, 1))
    inside = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    images = 40.0 + 60.0 * (inside < radius**2) + rng.normal(0, 18, (n, size, size))
    labels = rng.integers(0, 4, n)
    steps = np.array([[0, 1], [1, 0], [1, 1], [1, -1]])[labels]  # (dy, dx) per class
    start = rng.integers(size // 4, 3 * size // 4, (n, 2))
    for k in (-1, 0, 1):
        rows, cols = (start + k * steps).T
        images[np.arange(n), rows, cols] += 90.0
    images = np.clip(images, 0, 255).astype(np.uint8)[:, None]
    data = ImageData(images=images, labels=labels.astype(np.int64))
    return data.subset(np.arange(n_train)), data.subset(np.arange(n_train, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "strokes"), default="digits")
    parser.add_argument("--archs", default="resnet18,resnet10t")
    parser.add_argument("--stems", default="imagenet,small")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", default="0", help="comma-separated; accuracy is averaged")
    args = parser.parse_args()

    device = resolve_device(args.device)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    train, test = (digits if args.data == "digits" else strokes)(args.size)
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=str(device)
    )
    print(
        f"{args.data} {args.size}x{args.size}: {len(train)} train / {len(test)} test, "
        f"{args.epochs} epochs, seeds {seeds}, device {device}, "
        f"torch threads {torch.get_num_threads()}, timm {timm.__version__}"
    )
    print(
        f"{'arch':<22}{'stem':<10}{'params':>10}{'train img/s':>13}{'eval img/s':>12}"
        f"{'test acc':>10}{'(min-max)':>14}"
    )
    for arch in args.archs.split(","):
        for stem in args.stems.split(","):
            train_rates, eval_rates, accuracies = [], [], []
            for seed in seeds:
                torch.manual_seed(seed)
                model = TimmModel(TimmConfig(arch=arch, stem=stem)).build(
                    1, int(train.labels.max()) + 1, (args.size, args.size)
                )
                params = sum(p.numel() for p in model.parameters())
                start = time.perf_counter()
                train_classifier(model, train, settings, seed, progress=False)
                train_rates.append(args.epochs * len(train) / (time.perf_counter() - start))
                predict_proba(model, test.images[:64], device=device)  # warm-up
                start = time.perf_counter()
                probs = predict_proba(model, test.images, device=device)
                eval_rates.append(len(test) / (time.perf_counter() - start))
                accuracies.append(classification_metrics(probs, test.labels)["accuracy"])
            print(
                f"{arch:<22}{stem:<10}{params / 1e6:>9.2f}M{np.median(train_rates):>13.0f}"
                f"{np.median(eval_rates):>12.0f}{np.mean(accuracies):>10.3f}"
                f"{f'({min(accuracies):.3f}-{max(accuracies):.3f})':>14}",
                flush=True,
            )


if __name__ == "__main__":
    main()
