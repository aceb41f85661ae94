"""scikit-learn's bundled handwritten digits (1797 images, 8x8): a real, offline dataset."""

from __future__ import annotations

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from synthlearn.data.partitions import stratified_split
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import DataError


@attrs.define(frozen=True)
class DigitsConfig:
    """Image side length after resizing, and the share of each class held out for test."""

    size: int = attrs.field(
        default=16,
        metadata={"doc": "image side length after resizing"})
    test_fraction: float = attrs.field(
        default=0.25,
        metadata={"doc": "share of each class held out for test"})


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 (N, C, H, W) images to (N, C, size, size)."""
    if images.shape[2:] == (size, size):
        return images
    tensor = torch.from_numpy(images.astype(np.float32))
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


class DigitsDataset:
    """Dataset source ``digits``: ten classes "0".."9", grey (C=1), no attributes.

    Pixel values 0..16 are scaled to 0..255 and resized to ``size``; the train/test
    split is stratified and depends only on the seed.
    """

    def __init__(self, config: DigitsConfig | None = None) -> None:
        self.config = config or DigitsConfig()
        if not 4 <= self.config.size <= 512:
            raise DataError(f"digits: size must be between 4 and 512, got {self.config.size}")
        if not 0.0 < self.config.test_fraction < 1.0:
            raise DataError("digits: test_fraction must be between 0 and 1 (exclusive), "
                            f"got {self.config.test_fraction}")

    def load(self, seed: int) -> Dataset:
        """Load, scale, resize and split the digits."""
        from sklearn.datasets import load_digits

        bunch = load_digits()
        raw = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), 0..16
        images = np.round(raw * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
        images = resize_uint8(images, self.config.size)
        labels = np.asarray(bunch.target, dtype=np.int64)
        rng = np.random.default_rng(seed)
        train, test = stratified_split(labels, self.config.test_fraction, rng)
        return Dataset(
            name="digits",
            train=ImageData(images=images[train], labels=labels[train]),
            test=ImageData(images=images[test], labels=labels[test]),
            class_names=tuple(str(d) for d in range(10)),
        )
