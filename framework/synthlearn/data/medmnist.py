"""MedMNIST 2D subsets read from the standard ``.npz`` files (never unpickled)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import attrs
import numpy as np

from synthlearn.data.types import AttributeInfo, Dataset, ImageData
from synthlearn.errors import DataError

SIZES: tuple[int, ...] = (28, 64, 128, 224)
KEYS: tuple[str, ...] = ("train_images", "train_labels", "val_images", "val_labels",
                         "test_images", "test_labels")

_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
           "liver", "lung-left", "lung-right", "pancreas", "spleen")

# class names of the common 2D subsets (the label table of the MedMNIST v2 release)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal/benign"),
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                   "melanocytic nevi", "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "retinamnist": ("0", "1", "2", "3", "4"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast", "immature granulocytes",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"),
    "organamnist": _ORGANS,
    "organcmnist": _ORGANS,
    "organsmnist": _ORGANS,
}

# names of the findings of the multi-label subsets, used in attribute descriptions
FINDINGS: dict[str, tuple[str, ...]] = {
    "chestmnist": ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
                   "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema",
                   "fibrosis", "pleural", "hernia"),
}

MULTI_LABEL_CLASSES: tuple[str, ...] = ("no finding", "finding")


@attrs.define(frozen=True)
class MedMNISTConfig:
    """Which subset, where its ``.npz`` lives, the image size (28, 64, 128 or 224),
    whether to download it through the ``medmnist`` package when missing, whether to
    append the validation split to the training split, and which split the arms are
    scored on (``test_split``: ``test``, the default, or ``val``, which comes from the
    training images' own distribution where a file's test split does not)."""

    subset: str = "pneumoniamnist"
    root: str = "~/.medmnist"
    size: int = 28
    download: bool = True
    merge_val: bool = False
    test_split: str = attrs.field(default="test", validator=attrs.validators.in_(
        ("test", "val")))

    def __attrs_post_init__(self) -> None:
        if self.merge_val and self.test_split == "val":
            raise ValueError("'merge_val' would train on the 'val' split that 'test_split' "
                             "scores on; use one or the other")


def expand_root(root: str) -> Path:
    """``root`` with ``~`` and environment variables expanded."""
    return Path(os.path.expandvars(os.path.expanduser(root)))


def npz_path(config: MedMNISTConfig) -> Path:
    """Where the standard file is expected: ``{root}/{subset}.npz`` or ``..._{size}.npz``."""
    suffix = "" if config.size == 28 else f"_{config.size}"
    return expand_root(config.root) / f"{config.subset}{suffix}.npz"


def _to_nchw(images: np.ndarray, key: str, path: Path) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"{key} must be uint8, got {images.dtype}", where=str(path))
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    raise DataError(f"{key} must have shape (N, H, W) or (N, H, W, 1|3), got {images.shape}",
                    where=str(path))


def _check_labels(labels: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise DataError(f"{key} must be integers, got {labels.dtype}", where=str(path))
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[0] != n or labels.shape[1] < 1:
        raise DataError(f"{key} must have shape ({n}, K), got {labels.shape}", where=str(path))
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{key} has negative labels", where=str(path))
    return labels


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The six arrays of a standard MedMNIST file, checked; images become (N, C, H, W)
    and labels (N, K) int64. Raises ``DataError`` naming the file for any problem."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise DataError(f"not a MedMNIST file: missing key(s) {', '.join(missing)}",
                                where=str(path))
            raw = {k: archive[k] for k in KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read as .npz: {exc}", where=str(path)) from exc
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        images = _to_nchw(raw[f"{split}_images"], f"{split}_images", path)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = _check_labels(raw[f"{split}_labels"], len(images),
                                                  f"{split}_labels", path)
    shapes = {arrays[f"{s}_images"].shape[1:] for s in ("train", "val", "test")}
    if len(shapes) != 1:
        raise DataError(f"splits have different image shapes: {sorted(shapes)}", where=str(path))
    widths = {arrays[f"{s}_labels"].shape[1] for s in ("train", "val", "test")}
    if len(widths) != 1:
        raise DataError(f"splits have different label widths: {sorted(widths)}", where=str(path))
    return arrays


class MedMNISTDataset:
    """Dataset source ``medmnist``: a MedMNIST 2D subset from ``{root}/{subset}.npz``.

    Grey subsets give C=1, RGB subsets C=3. Multi-label subsets (e.g. chestmnist) become
    binary "no finding" / "finding" with one binary attribute ``finding_<i>`` per label.
    """

    def __init__(self, config: MedMNISTConfig | None = None) -> None:
        self.config = config or MedMNISTConfig()
        if self.config.size not in SIZES:
            raise DataError(f"medmnist: size must be one of {', '.join(map(str, SIZES))}, "
                            f"got {self.config.size}")
        if not self.config.subset or not self.config.subset.isidentifier():
            raise DataError(f"medmnist: subset must be a name like 'pneumoniamnist', "
                            f"got {self.config.subset!r}")

    @property
    def path(self) -> Path:
        """The file this source reads."""
        return npz_path(self.config)

    def load(self, seed: int) -> Dataset:
        """Read (downloading first if allowed and needed) and convert the file.

        The splits are the file's own; ``seed`` does not change anything."""
        path = self.path
        if not path.is_file():
            self._download(path)
        arrays = read_npz(path)
        size = self.config.size
        if arrays["train_images"].shape[2:] != (size, size):
            raise DataError(f"images are {arrays['train_images'].shape[2:]}, expected "
                            f"({size}, {size}) for size {size}", where=str(path))
        train_images, train_labels = arrays["train_images"], arrays["train_labels"]
        if self.config.merge_val:
            train_images = np.concatenate([train_images, arrays["val_images"]])
            train_labels = np.concatenate([train_labels, arrays["val_labels"]])
        split = self.config.test_split
        test_images, test_labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]

        subset = self.config.subset
        if train_labels.shape[1] > 1:
            width = train_labels.shape[1]
            names = FINDINGS.get(subset, ())
            attributes = tuple(
                AttributeInfo(f"finding_{i}", "binary", names[i] if i < len(names) else "")
                for i in range(width))
            return Dataset(
                name=subset,
                train=_multi_label(train_images, train_labels),
                test=_multi_label(test_images, test_labels),
                class_names=MULTI_LABEL_CLASSES,
                attributes=attributes,
            )

        train_y, test_y = train_labels[:, 0], test_labels[:, 0]
        largest = int(max(train_y.max(initial=0), test_y.max(initial=0)))
        class_names = CLASS_NAMES.get(subset) or tuple(f"class_{i}" for i in range(largest + 1))
        if largest >= len(class_names):
            raise DataError(f"label {largest} is out of range for the {len(class_names)} "
                            f"classes of {subset}", where=str(path))
        return Dataset(
            name=subset,
            train=ImageData(images=train_images, labels=train_y),
            test=ImageData(images=test_images, labels=test_y),
            class_names=class_names,
        )

    def _download(self, path: Path) -> None:
        hint = ("put the standard .npz there, or pip install medmnist and keep "
                "download: true while online")
        if not self.config.download:
            raise DataError(f"MedMNIST file not found: {path} ({hint})")
        try:
            import medmnist
        except ImportError:
            raise DataError(f"MedMNIST file not found: {path} ({hint})") from None
        subset = self.config.subset
        try:
            info = medmnist.INFO[subset]
            data_class = getattr(medmnist, info["python_class"])
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"split": "train", "download": True, "root": str(path.parent)}
            if self.config.size != 28:
                kwargs["size"] = self.config.size
            data_class(**kwargs)
        except Exception as exc:  # any failure of a third-party download is one line
            raise DataError(f"MedMNIST file not found: {path}, and downloading {subset!r} "
                            f"through the medmnist package failed: "
                            f"{type(exc).__name__}: {exc} ({hint})") from exc
        if not path.is_file():
            raise DataError(f"MedMNIST file not found: {path}, even after downloading "
                            f"{subset!r} through the medmnist package ({hint})")


def _multi_label(images: np.ndarray, labels: np.ndarray) -> ImageData:
    """Binary class (any finding) plus one 0/1 attribute per finding column."""
    findings = (labels > 0).astype(np.float32)
    return ImageData(
        images=images,
        labels=(findings.sum(axis=1) > 0).astype(np.int64),
        attributes={f"finding_{i}": findings[:, i].copy() for i in range(labels.shape[1])},
    )
