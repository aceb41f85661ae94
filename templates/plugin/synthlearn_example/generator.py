"""Example generator ``class_gaussian``: a per-class Gaussian over pixels, written to
be read and copied, not to be the best generator.

    generator: {use: class_gaussian, params: {components: 8}}

``fit`` models each class at one site as a Gaussian over its pixel vectors: the class's
mean image, its ``components`` largest principal directions (found with an SVD), and a
per-pixel spread for what those directions leave out. ``sample`` draws from that model
for each requested class, clips to 0..255 and returns uint8 images. No training loop,
no network: it fits in milliseconds on a CPU.

It conditions on the class only: the float vector a phenotypic conditioning adds to
each condition is accepted and ignored (a generator of your own may use it).

What to keep when you write your own (the ``Generator`` Protocol in ``synthlearn.api``):

* ``check(dataset, sites)`` refuses, before any work, what ``fit`` could not do;
* ``fit`` and ``sample`` are deterministic for a seed (a local RNG, never the global one);
* ``sample`` and ``state`` before ``fit``/``load`` raise ``SynthlearnError``;
* ``state()`` is a ``Payload``: tensors plus JSON meta, nothing pickled;
* ``load(payload, source)`` gets bytes from a site that may be hostile: every number in
  the meta is checked, then every tensor against the shape the meta implies
  (``received_tensor``), before anything is sized from them; any problem is one
  ``SynthlearnError`` naming ``source``.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from synthlearn.api import (
    Conditions,
    Dataset,
    ImageData,
    Payload,
    Site,
    SynthlearnError,
    received_tensor,
)

#: The name ``state()`` writes into its meta and ``load`` expects there.
NAME = "class_gaussian"

#: Version of the payload layout ``state`` writes and ``load`` reads. Bump it when the
#: layout changes, so an old payload is refused with a clear line.
FORMAT = 1

#: Most values per image (channels x height x width) it fits, loads or samples. The
#: model holds ``classes x (components + 2)`` of these, so this keeps it in memory.
MAX_PIXELS = 4 * 256 * 256

#: Most channels and classes a loaded payload may claim.
MAX_CHANNELS = 4
MAX_CLASSES = 1000

#: Most principal components per class (a param, and a loaded payload's claim).
MAX_COMPONENTS = 256

#: Most images ``sample`` draws at a time (memory: this many x pixels x 8 bytes).
SAMPLE_BATCH = 1024


@attrs.define(frozen=True)
class ClassGaussianConfig:
    """Params of the ``class_gaussian`` generator: a per-class Gaussian over pixels
    with a low-rank covariance (the class's leading principal components)."""

    components: int = attrs.field(
        default=8, validator=[attrs.validators.ge(0), attrs.validators.le(MAX_COMPONENTS)],
        metadata={"doc": "principal components per class (0 to 256); 0: every pixel "
                         "independent, with its own mean and spread"})
    spread: float = attrs.field(
        default=1.0, validator=[attrs.validators.gt(0.0), attrs.validators.le(2.0)],
        metadata={"doc": "scale of the drawn deviation from the class mean, in (0, 2]; "
                         "below 1 gives cleaner but less varied images"})
    min_images: int = attrs.field(
        default=4, validator=attrs.validators.ge(2),
        metadata={"doc": "the smallest site it fits on (>= 2); a class with fewer than 2 "
                         "images at a site borrows the site's pooled model"})


class ClassGaussianGenerator:
    """A per-class low-rank Gaussian (kind ``generator``, name ``class_gaussian``).

    Unfitted when made; ``fit`` or ``load`` sets ``mean`` (K, P), ``basis`` (K, R, P)
    and ``noise`` (K, P), float32 in pixel units (0..255), where K is the number of
    classes, R the components and P = C*H*W. An image of class k is
    ``mean[k] + z @ basis[k] + e * noise[k]`` with z ~ N(0, I_R) and e ~ N(0, I_P),
    each scaled by ``spread``, rounded and clipped to 0..255.
    """

    def __init__(self, config: ClassGaussianConfig) -> None:
        self.config = config
        self._shape: tuple[int, int, int] | None = None  # (C, H, W) once fitted or loaded
        self._model: dict[str, np.ndarray] = {}

    # --- checks --------------------------------------------------------------------

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Refuse images too large for the model, or a site with fewer than
        ``min_images`` images (naming the site)."""
        pixels = dataset.channels * dataset.image_size[0] * dataset.image_size[1]
        if pixels > MAX_PIXELS:
            raise SynthlearnError(f"images of {pixels} values are larger than "
                                  f"class_gaussian models (at most {MAX_PIXELS})")
        for site in sites:
            if len(site.data) < self.config.min_images:
                raise SynthlearnError(f"site {site.id} has {len(site.data)} images; "
                                      f"class_gaussian needs at least "
                                      f"{self.config.min_images} (params.min_images)")

    @staticmethod
    def _check_labels(conditions: Conditions, num_classes: int) -> np.ndarray:
        labels = np.asarray(conditions.labels, dtype=np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise SynthlearnError(f"condition labels must be in 0..{num_classes - 1}, "
                                  f"got {labels.min()}..{labels.max()}")
        return labels

    # --- fit -----------------------------------------------------------------------

    def fit(self, data: ImageData, conditions: Conditions, num_classes: int, seed: int, *,
            progress: bool = True, desc: str = "generator") -> None:
        """Fit one Gaussian per class on one site's uint8 images. It uses no randomness,
        so it is deterministic for any ``seed``; ``progress``/``desc`` are unused (a
        long fit would show a progress bar with them)."""
        images = data.images
        if images.ndim != 4 or images.dtype != np.uint8:
            raise SynthlearnError(f"expected uint8 images (N, C, H, W), got {images.dtype} "
                                  f"{images.shape}")
        n, c, h, w = (int(s) for s in images.shape)
        if c * h * w > MAX_PIXELS:
            raise SynthlearnError(f"images of {c * h * w} values are larger than "
                                  f"class_gaussian models (at most {MAX_PIXELS})")
        if n < self.config.min_images:
            raise SynthlearnError(f"{n} images; class_gaussian needs at least "
                                  f"{self.config.min_images} (params.min_images)")
        if not 1 <= num_classes <= MAX_CLASSES:
            raise SynthlearnError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
        if len(conditions) != n:
            raise SynthlearnError(f"{len(conditions)} conditions for {n} images")
        labels = self._check_labels(conditions, num_classes)

        x = images.reshape(n, -1).astype(np.float64)
        pooled = self._fit_one(x)
        parts = [self._fit_one(x[labels == k]) if (labels == k).sum() >= 2 else pooled
                 for k in range(num_classes)]
        self._model = {name: np.stack([p[name] for p in parts]).astype(np.float32)
                       for name in ("mean", "basis", "noise")}
        self._shape = (c, h, w)

    def _fit_one(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Mean, scaled principal directions (R, P) and residual spread of rows ``x``."""
        r = self.config.components
        mean = x.mean(axis=0)
        centred = x - mean
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        keep = min(r, len(sv))
        scale = sv[:keep] / np.sqrt(max(len(x) - 1, 1))  # std along each direction
        basis = np.zeros((r, x.shape[1]))
        basis[:keep] = vt[:keep] * scale[:, None]
        residual = centred - (centred @ vt[:keep].T) @ vt[:keep]
        noise = residual.std(axis=0, ddof=1)
        return {"mean": mean, "basis": basis, "noise": noise}

    # --- sampling ------------------------------------------------------------------

    def sample(self, conditions: Conditions, seed: int) -> np.ndarray:
        """uint8 images (N, C, H, W), one per condition's class, deterministic in
        ``seed`` (a local ``numpy`` generator; the global RNG is not touched)."""
        if self._shape is None:
            raise SynthlearnError("the class_gaussian generator has not been fitted or loaded")
        mean, basis, noise = self._model["mean"], self._model["basis"], self._model["noise"]
        labels = self._check_labels(conditions, len(mean))
        rng = np.random.default_rng(seed)
        spread = self.config.spread
        n, (r, p) = len(labels), basis.shape[1:]
        out = np.empty((n, p), dtype=np.uint8)
        for start in range(0, n, SAMPLE_BATCH):
            y = labels[start:start + SAMPLE_BATCH]
            z = rng.standard_normal((len(y), r))
            e = rng.standard_normal((len(y), p))
            x = mean[y] + spread * (np.einsum("nr,nrp->np", z, basis[y]) + e * noise[y])
            out[start:start + len(y)] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return out.reshape(n, *self._shape)

    # --- exchange ------------------------------------------------------------------

    def state(self) -> Payload:
        """The fitted model as three float32 tensors plus its sizes as JSON meta."""
        if self._shape is None:
            raise SynthlearnError("the class_gaussian generator has not been fitted or loaded")
        tensors = {name: torch.from_numpy(array.copy()) for name, array in self._model.items()}
        meta = {"generator": NAME, "format": FORMAT, "image_shape": list(self._shape),
                "num_classes": len(self._model["mean"]),
                "components": int(self._model["basis"].shape[1])}
        return Payload(tensors, meta)

    def load(self, payload: Payload, source: str) -> None:
        """Restore a fitted generator from ``state()``'s payload. The meta's numbers are
        checked first, then each tensor's dtype and exact shape against them, then its
        values; any problem is a one-line ``SynthlearnError`` naming ``source``."""
        shape, k, r = _parse_meta(payload.meta, source)
        p = shape[0] * shape[1] * shape[2]
        # received_tensor compares the tensor present with the shape asked for: nothing
        # is allocated from the meta's numbers, and a meta that lies is one line
        model = {
            "mean": received_tensor(payload.tensors, "mean", torch.float32, (k, p), source),
            "basis": received_tensor(payload.tensors, "basis", torch.float32, (k, r, p),
                                     source),
            "noise": received_tensor(payload.tensors, "noise", torch.float32, (k, p), source),
        }
        extra = sorted(set(payload.tensors) - set(model))
        if extra:
            raise SynthlearnError(f"unexpected tensor {extra[0]!r} in a class_gaussian payload",
                                  where=source)
        for name, array in model.items():
            if not np.isfinite(array).all():
                raise SynthlearnError(f"class_gaussian tensor {name!r} holds NaN or infinite "
                                      "values", where=source)
        if (model["noise"] < 0).any():
            raise SynthlearnError("class_gaussian tensor 'noise' holds negative spreads",
                                  where=source)
        self._model = {name: array.copy() for name, array in model.items()}
        self._shape = shape


def _parse_meta(meta: Any, source: str) -> tuple[tuple[int, int, int], int, int]:
    """``(image_shape, num_classes, components)`` from a payload's meta, each checked
    against its bound; errors name ``source``."""

    def fail(message: str) -> SynthlearnError:
        return SynthlearnError(message, where=source)

    def count(key: str, low: int, high: int) -> int:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise fail(f"class_gaussian payload {key!r} must be an integer in "
                       f"{low}..{high}, got {str(value)[:40]!r}")
        return value

    if not isinstance(meta, dict):
        raise fail("class_gaussian payload metadata is not a JSON object")
    if meta.get("generator") != NAME:
        raise fail(f"not a class_gaussian payload (meta 'generator' is "
                   f"{str(meta.get('generator'))[:40]!r})")
    if meta.get("format") != FORMAT or isinstance(meta.get("format"), bool):
        raise fail(f"unsupported class_gaussian payload format "
                   f"{str(meta.get('format'))[:40]!r} (this version reads {FORMAT})")
    shape = meta.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise fail(f"class_gaussian payload 'image_shape' must be [C, H, W] positive "
                   f"integers, got {str(shape)[:40]!r}")
    if shape[0] > MAX_CHANNELS or shape[0] * shape[1] * shape[2] > MAX_PIXELS:
        raise fail(f"class_gaussian payload 'image_shape' {shape} is larger than supported "
                   f"(at most {MAX_CHANNELS} channels and {MAX_PIXELS} values)")
    k = count("num_classes", 1, MAX_CLASSES)
    r = count("components", 0, MAX_COMPONENTS)
    return (shape[0], shape[1], shape[2]), k, r
