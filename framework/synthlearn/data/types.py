"""Image containers shared by datasets, partitions, arms and generators."""

from __future__ import annotations

import hashlib
from typing import Literal

import attrs
import numpy as np

from synthlearn.errors import DataError

AttributeKind = Literal["continuous", "binary", "categorical"]


@attrs.define(frozen=True)
class AttributeInfo:
    """A phenotype attribute carried per image (e.g. lesion size, scanner, a finding)."""

    name: str
    kind: AttributeKind
    description: str = ""


def _row_major_strides(array: np.ndarray) -> tuple[int, ...]:
    """The strides a freshly allocated C-order array of ``array``'s shape has."""
    strides, step = [], array.itemsize
    for size in reversed(array.shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


@attrs.define(frozen=True, eq=False)
class ImageData:
    """A set of labelled images held in memory.

    ``images`` is uint8 with shape (N, C, H, W); ``labels`` is int64 with shape (N,);
    ``attributes`` maps an attribute name to a float32 array of shape (N,).

    An ImageData is a value: do not change its arrays in place after construction
    (make a new one, e.g. with ``subset`` or ``concat``). Its ``fingerprint`` is
    computed once and kept, so an in-place change would not be seen by the cache keys.
    """

    images: np.ndarray
    labels: np.ndarray
    attributes: dict[str, np.ndarray] = attrs.field(factory=dict)
    _fingerprint: str | None = attrs.field(default=None, init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.images.strides != _row_major_strides(self.images):
            # the same values in another memory layout (a transposed array, a size-1 axis
            # with an odd stride) can steer torch to another convolution path and change
            # the numbers: every ImageData holds its images in one standard layout, so
            # the same data trains the same in any process (a site's node included)
            object.__setattr__(self, "images", np.array(self.images, order="C", copy=True))
        n = len(self.images)
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}")
        for name, values in self.attributes.items():
            if values.shape != (n,):
                raise ValueError(f"attribute {name!r} must have shape ({n},), got {values.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageData:
        """The images at ``index`` (an integer array), in that order."""
        return ImageData(
            images=self.images[index],
            labels=self.labels[index],
            attributes={k: v[index] for k, v in self.attributes.items()},
        )

    @staticmethod
    def concat(parts: list[ImageData]) -> ImageData:
        """The image sets one after another, in the given order; attributes are kept
        when every part has them."""
        if not parts:
            raise ValueError("concat needs at least one image set")
        names = set.intersection(*(set(p.attributes) for p in parts))
        return ImageData(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            attributes={n: np.concatenate([p.attributes[n] for p in parts])
                        for n in sorted(names)},
        )

    def class_counts(self, num_classes: int) -> list[int]:
        """How many images of each class, classes 0..num_classes-1."""
        return np.bincount(self.labels, minlength=num_classes).astype(int).tolist()

    def fingerprint(self) -> str:
        """A SHA-256 of images, labels and attributes: identifies the data in cache keys.
        Computed on the first call and kept (the arrays must not change in place)."""
        value = self._fingerprint
        if value is None:
            value = self._hash()
            object.__setattr__(self, "_fingerprint", value)
        return value

    def _hash(self) -> str:
        digest = hashlib.sha256()
        for array in (self.images, self.labels):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        for name in sorted(self.attributes):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.attributes[name]).tobytes())
        return digest.hexdigest()


@attrs.define(frozen=True, eq=False)
class RemoteSiteData:
    """A site's training images as the server knows them when they never leave the
    site's node (``data: {use: exported}``): how many, per class, their fingerprint and
    shape. It stands where a site's ``ImageData`` would: ``len``, ``class_counts`` and
    ``fingerprint`` work (cache keys, byte shares, the runner's check that a node holds
    the site it claims), while reading ``images``, ``labels`` or ``attributes`` at the
    server raises one ``DataError`` naming the site."""

    site: int
    n: int
    counts: tuple[int, ...]
    data_fingerprint: str

    def __len__(self) -> int:
        return self.n

    def class_counts(self, num_classes: int) -> list[int]:
        """How many images of each class, classes 0..num_classes-1."""
        return [int(c) for c in self.counts[:num_classes]] + \
            [0] * max(0, num_classes - len(self.counts))

    def fingerprint(self) -> str:
        """The SHA-256 the site's ``ImageData`` has (written by the export)."""
        return self.data_fingerprint

    def _absent(self, what: str) -> DataError:
        return DataError(f"this step needs the site's {what} at the server, but with "
                         "`data: exported` they stay at the site's node (site work runs "
                         "there: `runner: {use: flower, params: {mode: deployment}}`)",
                         where=f"site {self.site}")

    @property
    def images(self) -> np.ndarray:
        raise self._absent("images")

    @property
    def labels(self) -> np.ndarray:
        raise self._absent("labels")

    @property
    def attributes(self) -> dict[str, np.ndarray]:
        raise self._absent("attributes")


@attrs.define(frozen=True, eq=False)
class Dataset:
    """A dataset as loaded: the training split (to be partitioned into sites) and the
    test split (kept by the evaluator at the server, never given to a site).

    ``validation``, when the source has one (a MedMNIST file's val split), is a second
    held-out split from the training images' own distribution: every arm is scored on
    it too, beside the test split, so a gain that only suits a shifted test split shows.

    ``remote_sites``, when set (``data: {use: exported}``), are the sites of a
    deployment, known at the server by their counts and fingerprints only: ``train`` is
    then empty and the sites are these, not a partition of it.
    """

    name: str
    train: ImageData
    test: ImageData
    class_names: tuple[str, ...]
    attributes: tuple[AttributeInfo, ...] = ()
    validation: ImageData | None = None
    remote_sites: tuple[RemoteSiteData, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.test.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.test.images.shape[2]), int(self.test.images.shape[3])

    @property
    def n_train(self) -> int:
        """Training images in all: the training split's, or the remote sites' sum."""
        return sum(len(s) for s in self.remote_sites) if self.remote_sites else len(self.train)

    def train_class_counts(self) -> list[int]:
        """Training images per class, over the training split or the remote sites."""
        if self.remote_sites:
            return [sum(col) for col in zip(*(s.class_counts(self.num_classes)
                                              for s in self.remote_sites), strict=True)]
        return self.train.class_counts(self.num_classes)
