"""Speed and accuracy of timm classifiers on small images, per stem variant.

Trains each architecture on scikit-learn's digits (8x8, upscaled to ``--size``) and
prints, per (arch, stem): parameter count, training and evaluation images/s on the
current device, and test accuracy after ``--epochs`` epochs.

Stems: ``imagenet`` (timm's network unchanged), ``small`` (what ``stem: small`` builds),
``small-s2`` (first strided conv -> 3x3 stride 1, stem max-pool kept: one stride-2 left)
and ``small-s1`` (also the max-pool removed: full resolution into the first stage).

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
from synthlearn.evaluation import classification_metrics
from synthlearn.timm_model import TimmConfig, TimmModel, adapt_stem
from synthlearn.training import TrainSettings, predict_proba, resolve_device, train_classifier


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


def build(arch: str, stem: str, num_classes: int, size: int) -> torch.nn.Module:
    """The network for one (arch, stem) row."""
    if stem in ("imagenet", "small"):
        return TimmModel(TimmConfig(arch=arch, stem=stem)).build(1, num_classes, (size, size))
    model = TimmModel(TimmConfig(arch=arch, stem="imagenet")).build(1, num_classes, (size, size))
    adapt_stem(model, 1, keep_pool=stem == "small-s2")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,resnet10t")
    parser.add_argument("--stems", default="imagenet,small")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", default="0", help="comma-separated; accuracy is averaged")
    args = parser.parse_args()

    device = resolve_device(args.device)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    train, test = digits(args.size)
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=str(device)
    )
    print(
        f"digits {args.size}x{args.size}: {len(train)} train / {len(test)} test, "
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
                model = build(arch, stem, 10, args.size)
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
