"""Your own images: ``root/<class>/*.png`` (or ``root/train/<class>`` and ``root/test/<class>``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import numpy as np

from synthlearn.data.partitions import stratified_split
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import DataError
from synthlearn.params import input_path_field

if TYPE_CHECKING:
    from PIL import Image

EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@attrs.define(frozen=True)
class ImageFolderConfig:
    """The folder, the side length images are resized to, the channel count (0: from the
    first image, 1 if it is grey else 3) and the test share when there is no
    ``train``/``test`` pair of folders. A relative ``root`` written in a recipe file is
    relative to that file's folder."""

    root: str = input_path_field(
        metadata={"doc": "the folder: one subfolder per class, or `train`/`test` folders of them"
                         " (relative: to the recipe's folder)"})
    size: int = attrs.field(
        default=28,
        metadata={"doc": "side length images are resized to"})
    channels: int = attrs.field(
        default=0,
        metadata={"doc": "1 or 3; 0: from the first image (1 if it is grey, else 3)"})
    test_fraction: float = attrs.field(
        default=0.2,
        metadata={"doc": "test share when there is no `train`/`test` pair of folders"})


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _scan(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted subfolders) and (file, class index) pairs under ``folder``."""
    classes = _class_dirs(folder)
    if not classes:
        raise DataError(f"imagefolder: no class folders in {folder} "
                        "(expected root/<class>/*.png|jpg|jpeg|bmp|tif)")
    items = [(f, k) for k, c in enumerate(classes) for f in _image_files(c)]
    if not items:
        raise DataError(f"imagefolder: no images (png, jpg, jpeg, bmp, tif) in the class "
                        f"folders of {folder}")
    return [c.name for c in classes], items


def _mode_of(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode
    except Exception as exc:
        raise DataError(f"imagefolder: cannot read image {path}: {exc}") from exc


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float grey images scaled to 8 bits (PIL would clip them)."""
    from PIL import Image

    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max(initial=0.0))
    if image.mode.startswith("I;16") or 255 < top <= 65535:
        values = values / 257.0
    elif top > 65535:
        values = (values - values.min()) * (255.0 / (top - values.min()))
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), mode="L")


def _read(items: list[tuple[Path, int]], size: int, channels: int) -> ImageData:
    """Read, convert and resize images; uint8 (N, C, size, size)."""
    from PIL import Image

    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    images = np.empty((len(items), channels, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        try:
            with Image.open(path) as image:
                image = _to_8bit(image).convert("L" if channels == 1 else "RGB")
                array = np.asarray(image.resize((size, size), bilinear), dtype=np.uint8)
        except Exception as exc:
            raise DataError(f"imagefolder: cannot read image {path}: {exc}") from exc
        images[i] = array[None] if channels == 1 else array.transpose(2, 0, 1)
    labels = np.array([k for _, k in items], dtype=np.int64)
    return ImageData(images=images, labels=labels)


class ImageFolderDataset:
    """Dataset source ``imagefolder``: one subfolder per class (sorted names = classes).

    With ``root/train`` and ``root/test`` both present they are the splits (the class
    folders of both must be the same); otherwise the images are split stratified by the
    seed with ``test_fraction``.
    """

    def __init__(self, config: ImageFolderConfig) -> None:
        self.config = config
        if not 4 <= config.size <= 1024:
            raise DataError(f"imagefolder: size must be between 4 and 1024, got {config.size}")
        if config.channels not in (0, 1, 3):
            raise DataError(f"imagefolder: channels must be 0 (auto), 1 or 3, "
                            f"got {config.channels}")
        if not 0.0 < config.test_fraction < 1.0:
            raise DataError("imagefolder: test_fraction must be between 0 and 1 (exclusive), "
                            f"got {config.test_fraction}")

    @property
    def root(self) -> Path:
        """The folder, with ``~`` and environment variables expanded."""
        return Path(os.path.expandvars(os.path.expanduser(self.config.root)))

    def load(self, seed: int) -> Dataset:
        """Read every image; split by folders or by ``seed``."""
        root = self.root
        if not root.is_dir():
            raise DataError(f"imagefolder: root folder not found: {root}")
        train_dir, test_dir = root / "train", root / "test"
        if train_dir.is_dir() and test_dir.is_dir():
            class_names, train_items = _scan(train_dir)
            test_names, test_items = _scan(test_dir)
            if test_names != class_names:
                raise DataError(f"imagefolder: class folders differ between {train_dir} "
                                f"({', '.join(class_names)}) and {test_dir} "
                                f"({', '.join(test_names)})")
        else:
            class_names, items = _scan(root)
            labels = np.array([k for _, k in items], dtype=np.int64)
            train_idx, test_idx = stratified_split(labels, self.config.test_fraction,
                                                   np.random.default_rng(seed))
            train_items = [items[i] for i in train_idx]
            test_items = [items[i] for i in test_idx]
            if not train_items or not test_items:
                raise DataError(f"imagefolder: too few images in {root} to make both a train "
                                "and a test split")
        channels = self.config.channels
        if channels == 0:
            first = train_items[0][0]
            channels = 1 if _mode_of(first) in ("1", "L", "LA", "I", "I;16", "F") else 3
        return Dataset(
            name=root.name or "imagefolder",
            train=_read(train_items, self.config.size, channels),
            test=_read(test_items, self.config.size, channels),
            class_names=tuple(class_names),
        )
