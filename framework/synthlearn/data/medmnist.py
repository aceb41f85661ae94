"""MedMNIST 2D subsets read from the standard ``.npz`` files (never unpickled)."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import attrs
import numpy as np

from synthlearn.data.types import AttributeInfo, Dataset, ImageData
from synthlearn.errors import DataError
from synthlearn.params import input_path_field

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


def _per_class(_instance: object, attribute: attrs.Attribute, value: list[int]) -> None:
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"'{attribute.name}' must be a list of image counts >= 0, one per "
                         f"class, got {value!r}")
    if value and not any(value):
        raise ValueError(f"'{attribute.name}' keeps no image: {value!r}")


#: Where ``train_per_class`` sits in a recipe (the dataset's problems name it).
TRAIN_PER_CLASS = "$.data.params.train_per_class"


@attrs.define(frozen=True)
class MedMNISTConfig:
    """Which subset, where its ``.npz`` lives, the image size (28, 64, 128 or 224),
    whether to download it through the ``medmnist`` package when missing, whether to
    append the validation split to the training split, and which split the arms are
    scored on (``test_split``: ``test``, the default, or ``val``, which comes from the
    training images' own distribution where a file's test split does not).

    ``train_per_class: [n0, n1, ...]`` keeps exactly that many training images of each
    class (after ``merge_val``), chosen at random for the run's seed, before the sites
    are made: small or imbalanced sites from a large file, e.g. ``[113, 337]`` for three
    sites of about 150 images at 1:3. The test and validation splits stay whole. A count
    the file cannot meet, or a list of the wrong length, is an error at load."""

    subset: str = attrs.field(
        default="pneumoniamnist",
        metadata={"doc": "the MedMNIST subset, e.g. `pneumoniamnist`"})
    root: str = input_path_field(
        default="~/.medmnist",
        metadata={"doc": "folder holding `<subset>[_<size>].npz` (relative: to the recipe's "
                         "folder)"})
    size: int = attrs.field(
        default=28,
        metadata={"doc": "image size of the file: 28, 64, 128 or 224"})
    download: bool = attrs.field(
        default=True,
        metadata={"doc": "download the file through the `medmnist` package when it is missing"})
    merge_val: bool = attrs.field(
        default=False,
        metadata={"doc": "append the validation split to the training split"})
    test_split: str = attrs.field(
        default="test", validator=attrs.validators.in_(         ("test", "val")),
        metadata={"doc": "the split the arms are scored on: `test`, or `val`, which comes from "
                         "the training images' own distribution where a file's test split does "
                         "not"})

    train_per_class: list[int] = attrs.field(
        factory=list, validator=_per_class,
        metadata={"doc": "keep this many training images of each class, one count per class, "
                         "chosen for the seed before the sites are made, e.g. `[113, 337]` "
                         "(empty: the whole split)"})

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


#: Most classes a single-label file may use (a larger label is a corrupt file).
MAX_CLASSES = 1000

#: Most label columns (findings) a multi-label file may have.
MAX_LABEL_COLUMNS = 64

#: Deflate expands at most about 1032-fold: a member declaring more than that over its
#: compressed size is a lie that would size an allocation.
MAX_DEFLATE_RATIO = 1032


@attrs.frozen
class _Member:
    """One array of the archive as its ``.npy`` header declares it (nothing read yet)."""

    shape: tuple[int, ...]
    dtype: np.dtype


def _fail(path: Path, message: str) -> DataError:
    return DataError(message, where=str(path))


def _header(archive: zipfile.ZipFile, key: str, path: Path) -> _Member:
    """Shape and dtype of ``key`` from its ``.npy`` header, checked against the sizes
    the archive declares for it, so reading it allocates no more than the file holds."""
    info = archive.getinfo(f"{key}.npy")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _fail(path, f"cannot read as .npz: {key} is compressed with zip method "
                    f"{info.compress_type} (numpy writes stored or deflated arrays)")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
    if info.file_size > ratio * info.compress_size + 1024:
        raise _fail(path, f"cannot read as .npz: {key} declares {info.file_size:,} bytes "
                    f"from {info.compress_size:,} compressed")
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy format version {version}")
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(f)
            header_bytes = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(path, f"cannot read as .npz: {key}: {exc}") from None
    if dtype.hasobject:
        raise _fail(path, f"cannot read as .npz: {key} holds pickled Python objects, "
                    "which synthlearn never loads")
    size = math.prod(shape) * dtype.itemsize
    if header_bytes + size != info.file_size:
        raise _fail(path, f"cannot read as .npz: {key} declares shape {shape} of {dtype} "
                    f"({size:,} bytes), the archive holds {info.file_size - header_bytes:,}")
    return _Member(tuple(int(d) for d in shape), dtype)


def _check_images(member: _Member, key: str, path: Path) -> None:
    if member.dtype != np.uint8:
        raise _fail(path, f"{key} must be uint8, got {member.dtype}")
    shape = member.shape
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))):
        raise _fail(path, f"{key} must have shape (N, H, W) or (N, H, W, 1|3), got {shape}")


def _check_label_header(member: _Member, n: int, key: str, path: Path) -> None:
    if not (np.issubdtype(member.dtype, np.integer) or member.dtype == np.bool_):
        raise _fail(path, f"{key} must be integers, got {member.dtype}")
    shape = member.shape if len(member.shape) != 1 else (*member.shape, 1)
    if len(shape) != 2 or shape[0] != n or not 1 <= shape[1] <= MAX_LABEL_COLUMNS:
        raise _fail(path, f"{key} must have shape ({n}, K) with K in 1..{MAX_LABEL_COLUMNS}, "
                    f"one row per image, got {member.shape}")


def _to_nchw(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _check_labels(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Labels (N, K) int64, their values checked in their own dtype first (a uint64
    beyond int64 would wrap, a huge class index would size the class list)."""
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.size and labels.dtype != np.bool_:
        low, high = labels.min(), labels.max()
        if low < 0:
            raise _fail(path, f"{key} has negative labels")
        if labels.shape[1] == 1 and high >= MAX_CLASSES:
            raise _fail(path, f"{key} holds label {high}; a file may use at most "
                        f"{MAX_CLASSES} classes")
    return labels.astype(np.int64)


def _inspect(path: Path) -> dict[str, _Member]:
    """Every array's declared shape and dtype, checked against each other."""
    try:
        if not zipfile.is_zipfile(path):
            raise _fail(path, "cannot read as .npz: not a zip archive")
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [k for k in KEYS if f"{k}.npy" not in names]
            if missing:
                raise _fail(path, f"not a MedMNIST file: missing key(s) {', '.join(missing)}")
            declared = sum(archive.getinfo(f"{k}.npy").compress_size for k in KEYS)
            if declared > path.stat().st_size:
                raise _fail(path, "cannot read as .npz: the archive declares more "
                            "compressed bytes than the file has")
            members = {k: _header(archive, k, path) for k in KEYS}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(path, f"cannot read as .npz: {exc}") from None
    for split in ("train", "val", "test"):
        images = members[f"{split}_images"]
        _check_images(images, f"{split}_images", path)
        _check_label_header(members[f"{split}_labels"], images.shape[0], f"{split}_labels",
                            path)
    return members


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The six arrays of a standard MedMNIST file, checked; images become (N, C, H, W)
    and labels (N, K) int64. Raises ``DataError`` naming the file for any problem.

    The arrays' headers are checked against each other and the archive's sizes before
    any array is read, and labels before images, so a corrupt or hostile file cannot
    make the reader allocate more than the file holds."""
    members = _inspect(path)
    shapes = {members[f"{s}_images"].shape[1:3] for s in ("train", "val", "test")}
    if len(shapes) != 1:
        raise _fail(path, f"splits have different image shapes: {sorted(shapes)}")
    widths = {(members[f"{s}_labels"].shape + (1,))[1] for s in ("train", "val", "test")}
    if len(widths) != 1:
        raise _fail(path, f"splits have different label widths: {sorted(widths)}")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for split in ("train", "val", "test"):
                key = f"{split}_labels"
                arrays[key] = _check_labels(archive[key], key, path)
            for split in ("train", "val", "test"):
                key = f"{split}_images"
                arrays[key] = _to_nchw(archive[key])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"cannot read as .npz: {exc}") from None
    channels = {arrays[f"{s}_images"].shape[1] for s in ("train", "val", "test")}
    if len(channels) != 1:
        raise _fail(path, f"splits have different channel counts: {sorted(channels)}")
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

        The splits are the file's own; ``seed`` only chooses the training images that
        ``train_per_class`` keeps."""
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
        # the file's val split scores every arm a second time, in distribution, unless
        # it is the test split already or was merged into training
        has_val = split == "test" and not self.config.merge_val
        val_images, val_labels = arrays["val_images"], arrays["val_labels"]

        subset = self.config.subset
        if train_labels.shape[1] > 1:
            width = train_labels.shape[1]
            names = FINDINGS.get(subset, ())
            attributes = tuple(
                AttributeInfo(f"finding_{i}", "binary", names[i] if i < len(names) else "")
                for i in range(width))
            return Dataset(
                name=subset,
                train=self._kept(_multi_label(train_images, train_labels),
                                 len(MULTI_LABEL_CLASSES), seed, path),
                test=_multi_label(test_images, test_labels),
                class_names=MULTI_LABEL_CLASSES,
                attributes=attributes,
                validation=_multi_label(val_images, val_labels) if has_val else None,
            )

        train_y, test_y = train_labels[:, 0], test_labels[:, 0]
        largest = int(max(train_y.max(initial=0), test_y.max(initial=0)))
        class_names = CLASS_NAMES.get(subset) or tuple(f"class_{i}" for i in range(largest + 1))
        if largest >= len(class_names):
            raise DataError(f"label {largest} is out of range for the {len(class_names)} "
                            f"classes of {subset}", where=str(path))
        return Dataset(
            name=subset,
            train=self._kept(ImageData(images=train_images, labels=train_y), len(class_names),
                             seed, path),
            test=ImageData(images=test_images, labels=test_y),
            class_names=class_names,
            validation=(ImageData(images=val_images, labels=val_labels[:, 0])
                        if has_val else None),
        )

    def _kept(self, train: ImageData, num_classes: int, seed: int, path: Path) -> ImageData:
        """``train`` cut to ``train_per_class`` images of each class (all of it when the
        list is empty), chosen for ``seed``, in the file's order."""
        want = self.config.train_per_class
        if not want:
            return train
        if len(want) != num_classes:
            raise DataError(f"gives {len(want)} counts, {path.name} has {num_classes} "
                            f"classes", where=TRAIN_PER_CLASS)
        have = train.class_counts(num_classes)
        short = [f"class {c}: {w} of {h}" for c, (w, h) in enumerate(zip(want, have,
                                                                         strict=True)) if w > h]
        if short:
            raise DataError(f"asks for more images than the training split of {path.name} "
                            f"holds ({'; '.join(short)})", where=TRAIN_PER_CLASS)
        rng = np.random.default_rng(seed)
        keep = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), w, replace=False)
                               for c, w in enumerate(want)])
        return train.subset(np.sort(keep))

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
