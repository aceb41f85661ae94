"""How close synthetic images are to real ones: Fréchet distance, k-NN precision/recall
and the realism score.

The evaluator holds the real test set and scores each synthetic arm's pool of synthetic
images against it. Images are first mapped to features by :class:`FeatureSpace`, a small
*random* convolutional network whose weights come from the constant :data:`FEATURE_SEED`
(never from a recipe seed). No pretrained weights are needed, so it runs offline, and
the same images always give the same features.

This is **not** the Inception FID of the literature: the absolute numbers mean nothing
outside this feature space. They are comparable across runs, recipes and arms that score
images of the same dataset (same channels and size) here, which is what a comparison of
arms needs. Lower ``fd`` is closer; ``precision`` (are the synthetic images realistic?)
and ``recall`` (do they cover the variety of the real ones?) are shares in [0, 1], and
so are ``realism`` (the share of synthetic images a real-vs-synthetic classifier takes
for real: about 0.5 when it cannot tell them apart, 0 when it always can) and its
control ``realism_real``.

* :func:`frechet_distance` fits a Gaussian to each feature set and returns the Fréchet
  distance ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
* :func:`knn_precision_recall` is the improved precision and recall of Kynkäänniemi et
  al. (2019): each sample's k-NN radius defines a ball; the union of the balls of one
  set approximates its support (its manifold).
* :func:`realism_score` is the "realism score" of FedGAN: a logistic regression trained
  to tell real from synthetic features, scored on held-out images.
* :func:`fidelity` ties them together for two uint8 image arrays.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

FEATURE_SEED = 20190131
"""Seed of the feature network's weights: fixed, so numbers compare across runs."""

FEATURE_SIZE = 32
"""Images are resized to FEATURE_SIZE x FEATURE_SIZE before the network."""

STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256)
"""Output channels of the network's stages (each a 3x3 convolution of stride 2 + ReLU)."""


class FeatureSpace:
    """A fixed random convolutional feature extractor for uint8 images.

    Images (N, C, H, W) of any channel count and any size are brought to 3 channels
    (1 channel is replicated; 3 are kept; any other count is averaged to grey and
    replicated), scaled to [-1, 1] and resized to 32 x 32 (bilinear, antialiased). Three
    stages of 3x3 convolution with stride 2 and ReLU (3 -> 64 -> 128 -> 256 channels,
    32 -> 16 -> 8 -> 4 pixels) follow; the features are the global average pool of every
    stage, concatenated (64 + 128 + 256 = 448 values), so both low-level statistics
    (intensity, edges) and higher-level ones count.

    Weights are Kaiming-normal, drawn from a private ``torch.Generator`` seeded with
    ``seed`` (by default :data:`FEATURE_SEED`): the global torch RNG is neither used nor
    changed, and the same images always give the same features. Features are computed
    on the CPU under ``torch.inference_mode`` in batches of ``batch_size``.
    """

    def __init__(self, seed: int = FEATURE_SEED, batch_size: int = 256) -> None:
        self.seed = int(seed)
        self.batch_size = max(1, int(batch_size))
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        weights = []
        in_channels = 3
        for out_channels in STAGE_CHANNELS:
            fan_in = in_channels * 3 * 3
            w = torch.randn(out_channels, in_channels, 3, 3, generator=generator,
                            dtype=torch.float32)
            weights.append(w.mul_(math.sqrt(2.0 / fan_in)))
            in_channels = out_channels
        self._weights = tuple(weights)

    @property
    def dim(self) -> int:
        """Number of features per image."""
        return int(sum(STAGE_CHANNELS))

    @staticmethod
    def _prepare(images: np.ndarray) -> torch.Tensor:
        """uint8 (n, C, H, W) -> float32 (n, 3, 32, 32) in [-1, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(images)).float().mul_(2.0 / 255.0).sub_(1.0)
        channels = x.shape[1]
        if channels == 1:
            x = x.expand(-1, 3, -1, -1)
        elif channels != 3:
            x = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        if tuple(x.shape[2:]) != (FEATURE_SIZE, FEATURE_SIZE):
            x = F.interpolate(x, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear",
                              align_corners=False, antialias=True)
        return x.contiguous()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features (N, :attr:`dim`) float64 of uint8 images (N, C, H, W)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} "
                             f"{images.shape}")
        if images.shape[1] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
            raise ValueError(f"images must have at least one channel and pixel, got "
                             f"{images.shape}")
        out = np.empty((len(images), self.dim), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start:start + self.batch_size]
                x = self._prepare(batch)
                pooled = []
                for w in self._weights:
                    x = F.relu(F.conv2d(x, w, stride=2, padding=1))
                    pooled.append(x.mean(dim=(2, 3)))
                out[start:start + len(batch)] = torch.cat(pooled, dim=1).double().numpy()
        return out


@functools.lru_cache(maxsize=1)
def default_feature_space() -> FeatureSpace:
    """The shared :class:`FeatureSpace` with the default seed (built once)."""
    return FeatureSpace()


# --------------------------------------------------------------------------- Fréchet distance


def _single_threaded_blas() -> threadpool_limits:
    """Limit numpy's BLAS/LAPACK to one thread inside a ``with`` block (restored after).

    The matrices here are small (a few hundred features): one thread is about as fast
    as several on an idle machine and many times faster on a busy one, where spinning
    BLAS threads fight each other and the training processes for cores.
    """
    return threadpool_limits(limits=1, user_api="blas")


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    values = np.sqrt(np.clip(values, 0.0, None))
    return (vectors * values) @ vectors.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, F), (M, F).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``. The
    symmetric square roots ``S^1/2`` come from ``eigh`` (tiny negative eigenvalues, from
    round-off, clipped to 0); the trace term is the sum of the singular values of
    ``S_b^1/2 S_a^1/2``, which equals it exactly and is stable for singular covariances
    (fewer samples than features) without taking square roots of round-off. The result
    is clipped at 0, so identical inputs give 0 (up to round-off), never NaN.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with the same F, got {a.shape} "
                         f"and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 samples")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1])
    cov_b = np.cov(b, rowvar=False).reshape(b.shape[1], b.shape[1])
    # (S_a^1/2 S_b S_a^1/2)^1/2 has the singular values of S_b^1/2 S_a^1/2 as eigenvalues:
    # summing those avoids square roots of round-off-sized eigenvalues.
    with _single_threaded_blas():
        product = _sqrt_psd(cov_b) @ _sqrt_psd(cov_a)
        trace_root = float(np.linalg.svd(product, compute_uv=False).sum())
    diff = mu_a - mu_b
    value = float(diff @ diff) + float(np.trace(cov_a)) + float(np.trace(cov_b)) \
        - 2.0 * trace_root
    return max(value, 0.0)


# --------------------------------------------------------------------------- precision/recall


_CHUNK = 512


def squared_distances(a: np.ndarray, b: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), clipped at 0."""
    a_norms = np.einsum("ij,ij->i", a, a)
    d2 = a_norms[:, None] + b_norms[None, :] - 2.0 * (a @ b.T)
    return np.clip(d2, 0.0, None)


def _knn_radii(feats: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of every sample to its k-th nearest other sample."""
    norms = np.einsum("ij,ij->i", feats, feats)
    radii = np.empty(len(feats), dtype=np.float64)
    for start in range(0, len(feats), _CHUNK):
        stop = min(start + _CHUNK, len(feats))
        d2 = squared_distances(feats[start:stop], feats, norms)
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        radii[start:stop] = np.partition(d2, k - 1, axis=1)[:, k - 1]
    return radii


def _coverage(support: np.ndarray, radii: np.ndarray, queries: np.ndarray,
              tolerance: float) -> float:
    """Share of ``queries`` inside at least one ball (support[j], radius radii[j])."""
    norms = np.einsum("ij,ij->i", support, support)
    inside = 0
    for start in range(0, len(queries), _CHUNK):
        d2 = squared_distances(queries[start:start + _CHUNK], support, norms)
        inside += int(np.any(d2 <= radii[None, :] + tolerance, axis=1).sum())
    return inside / len(queries)


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of feature sets (N, F).

    Every sample of a set gets a ball reaching to its ``k``-th nearest neighbour in the
    same set; the union of the balls approximates the set's support. ``precision`` is
    the share of ``fake`` samples inside the union of the real balls, ``recall`` the
    share of ``real`` samples inside the union of the fake balls. A point on a ball's
    boundary (up to round-off) counts as inside, so identical sets give (1.0, 1.0).
    """
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    k = int(k)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with the same F, got {real.shape} "
                         f"and {fake.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"each feature set needs more than k={k} samples, got "
                         f"{len(real)} and {len(fake)}")
    scale = float(max(np.einsum("ij,ij->i", real, real).max(),
                      np.einsum("ij,ij->i", fake, fake).max(), 1e-300))
    tolerance = 1e-9 * scale  # round-off of |a|^2 + |b|^2 - 2ab
    with _single_threaded_blas():
        precision = _coverage(real, _knn_radii(real, k), fake, tolerance)
        recall = _coverage(fake, _knn_radii(fake, k), real, tolerance)
    return precision, recall


# --------------------------------------------------------------------------- realism score


REALISM_MIN_IMAGES = 8
"""The fewest images of each set :func:`realism_score` scores (fewer: ``None``)."""

REALISM_MAX_ITER = 1000
"""Iterations of the real-vs-synthetic classifier's lbfgs solver (a fixed budget)."""

_REALISM_STREAM = 0x7265616C
"""Mixed into the seed, so the realism split is not the subsample's random stream."""


def realism_score(real_feats: np.ndarray, fake_feats: np.ndarray,
                  seed: int = 0) -> dict[str, float | None]:
    """FedGAN's realism score: the share of synthetic images that a classifier trained to
    tell real from synthetic takes for real, with the same share of real images beside.

    ``m = min(len(real_feats), len(fake_feats))`` samples of each feature set (N, F) are
    drawn without replacement and split in two halves, a fit half of ``m // 2`` and a
    held-out half of the rest, all with ``np.random.default_rng([seed, stream])``. The
    features are standardised by the mean and standard deviation of the fit halves
    (both sets together; a constant feature is only centred), and a scikit-learn
    ``LogisticRegression`` (L2, ``C=1.0``, lbfgs, :data:`REALISM_MAX_ITER` iterations)
    learns real = 1 against synthetic = 0 on them. On the held-out halves:

    * ``realism``: the share of synthetic samples it predicts real (probability > 0.5):
      about 0.5 when the sets cannot be told apart, 0 when they always can;
    * ``realism_real``: the share of real samples it predicts real, the control: about
      0.5 for sets that cannot be told apart, 1 for separable ones.

    Both are ``None`` when ``m`` is below :data:`REALISM_MIN_IMAGES` (too few to fit on
    one half and score the other). The two sets should share no image: an image in both
    can be fitted as synthetic and then scored as real, which pushes both figures away
    from 0.5 in opposite directions (a set against itself gives neither 0.5). The result
    depends only on the inputs and ``seed``; the fit runs with single-threaded BLAS and
    leaks no scikit-learn warning (a fit that stops at the iteration budget still gives
    its figures).

    Raises ``ValueError`` when the feature sets are not (N, F) with the same F.
    """
    real = np.asarray(real_feats, dtype=np.float64)
    fake = np.asarray(fake_feats, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with the same F, got {real.shape} "
                         f"and {fake.shape}")
    m = min(len(real), len(fake))
    if m < REALISM_MIN_IMAGES:
        return {"realism": None, "realism_real": None}
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng([int(seed), _REALISM_STREAM])
    real = real[rng.permutation(len(real))[:m]]  # a random m of each, in random order
    fake = fake[rng.permutation(len(fake))[:m]]
    half = m // 2
    fit = np.concatenate([real[:half], fake[:half]])
    labels = np.concatenate([np.ones(half, dtype=np.int64), np.zeros(half, dtype=np.int64)])
    mean = fit.mean(axis=0)
    std = fit.std(axis=0)
    std[std <= 1e-12 * max(float(np.abs(fit).max()), 1e-300)] = 1.0  # constant: centred
    classifier = LogisticRegression(C=1.0, solver="lbfgs", max_iter=REALISM_MAX_ITER)
    with _single_threaded_blas(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"sklearn\.")
        classifier.fit((fit - mean) / std, labels)
        p_real = classifier.predict_proba((real[half:] - mean) / std)[:, 1]
        p_fake = classifier.predict_proba((fake[half:] - mean) / std)[:, 1]
    return {"realism": float(np.mean(p_fake > 0.5)),
            "realism_real": float(np.mean(p_real > 0.5))}


# --------------------------------------------------------------------------- images


def _subsample(images: np.ndarray, max_images: int, rng: np.random.Generator) -> np.ndarray:
    if len(images) <= max_images:
        return images
    return images[np.sort(rng.choice(len(images), size=max_images, replace=False))]


def fidelity(real: np.ndarray, fake: np.ndarray, *, k: int = 3, max_images: int = 2000,
             seed: int = 0) -> dict:
    """Fidelity of synthetic images ``fake`` to real images ``real`` (both uint8 (N, C, H, W)).

    Each set is first subsampled to at most ``max_images`` images, without replacement
    and in the original order, with ``np.random.default_rng(seed)``; both are mapped by
    the default :class:`FeatureSpace`. Returns ``{"fd", "precision", "recall", "realism",
    "realism_real", "n_real", "n_fake"}`` (plain floats, ints and ``None``, JSON-able);
    ``n_*`` are the counts actually used. ``realism`` and ``realism_real`` come from
    :func:`realism_score` on the same features with the same ``seed``: the share of
    held-out synthetic (real) images that a real-vs-synthetic classifier takes for real,
    or ``None`` when either set has fewer than :data:`REALISM_MIN_IMAGES` images.

    The Fréchet distance is biased upwards for small sets (the covariances are
    estimated from fewer samples): compare arms at similar ``n_fake``.

    Raises ``ValueError`` when an array is not (N, C, H, W), when the two sets differ in
    (C, H, W), or when either has fewer than ``k + 1`` images.
    """
    real = np.asarray(real)
    fake = np.asarray(fake)
    k = int(k)
    if real.ndim != 4 or fake.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {real.shape} and {fake.shape}")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and synthetic images differ in (C, H, W): "
                         f"{tuple(real.shape[1:])} vs {tuple(fake.shape[1:])}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(real) < k + 1 or len(fake) < k + 1:
        raise ValueError(f"need at least k + 1 = {k + 1} images in each set, got "
                         f"{len(real)} real and {len(fake)} synthetic")
    max_images = max(int(max_images), k + 1)
    rng = np.random.default_rng(seed)
    real = _subsample(real, max_images, rng)
    fake = _subsample(fake, max_images, rng)
    space = default_feature_space()
    real_feats, fake_feats = space(real), space(fake)
    precision, recall = knn_precision_recall(real_feats, fake_feats, k=k)
    fd = frechet_distance(real_feats, fake_feats)
    realism = realism_score(real_feats, fake_feats, seed=seed)
    return {
        "fd": float(fd),
        "precision": float(precision),
        "recall": float(recall),
        "realism": realism["realism"],
        "realism_real": realism["realism_real"],
        "n_real": int(len(real)),
        "n_fake": int(len(fake)),
    }
