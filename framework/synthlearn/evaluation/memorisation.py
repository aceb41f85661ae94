"""Does a synthetic set copy its training images? Distances to the closest real image.

For every synthetic image: the distance to its closest **member** (an image its
generator was fitted on) and to its closest **non-member** (a real image it never saw,
from a set of the same size), in pixel space and in the fixed random feature space of
``synthlearn.evaluation.fidelity``. A generator that only learned the distribution puts its images
as close to non-members as to members (``closer_to_members`` about 0.5); one that
memorised puts them closer to members.

A **near-copy** is a synthetic image closer to a member than the ``quantile`` (default
1%) of the members' own nearest-neighbour distances (each member to its closest other
member): closer than almost any two real training images are to each other. That
threshold needs only the site's own images, so a site can drop near-copies before they
leave (``near_copy_mask``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthlearn.evaluation.fidelity import FeatureSpace, squared_distances

#: Default quantile of the members' nearest-neighbour distances below which a synthetic
#: image counts as a near-copy.
NEAR_COPY_QUANTILE = 0.01

_CHUNK = 512


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, C, H, W) -> float64 vectors in [0, 1] (N, C*H*W)."""
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def nearest(queries: np.ndarray, support: np.ndarray, *, exclude_self: bool = False
            ) -> np.ndarray:
    """Euclidean distance from each query vector to its closest support vector; with
    ``exclude_self`` (queries are the support) a vector is not its own neighbour."""
    norms = np.einsum("ij,ij->i", support, support)
    out = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), _CHUNK):
        stop = min(start + _CHUNK, len(queries))
        d2 = squared_distances(queries[start:stop], support, norms)
        if exclude_self:
            d2[np.arange(stop - start), np.arange(start, stop)] = np.inf
        out[start:stop] = np.sqrt(d2.min(axis=1))
    return out


def near_copy_threshold(members: np.ndarray, quantile: float = NEAR_COPY_QUANTILE) -> float:
    """The ``quantile`` of the members' leave-one-out nearest-neighbour distances."""
    if len(members) < 2:
        raise ValueError("need at least two members to set a near-copy threshold")
    return float(np.quantile(nearest(members, members, exclude_self=True), quantile))


def near_copy_mask(synthetic: np.ndarray, members: np.ndarray,
                   quantile: float = NEAR_COPY_QUANTILE) -> tuple[np.ndarray, float]:
    """Which synthetic images (uint8) are near-copies of a member (uint8), in pixel
    space, and the threshold used. Needs only the site's own images."""
    real = pixels(members)
    threshold = near_copy_threshold(real, quantile)
    return nearest(pixels(synthetic), real) < threshold, threshold


def _space_figures(synth: np.ndarray, members: np.ndarray, nonmembers: np.ndarray,
                   quantile: float) -> dict[str, Any]:
    d_mem = nearest(synth, members)
    d_non = nearest(synth, nonmembers)
    threshold = near_copy_threshold(members, quantile)
    return {
        "median_distance_to_members": float(np.median(d_mem)),
        "median_distance_to_nonmembers": float(np.median(d_non)),
        "closer_to_members": float(np.mean(d_mem < d_non) + 0.5 * np.mean(d_mem == d_non)),
        "near_copies": float(np.mean(d_mem < threshold)),
        "near_copy_threshold": threshold,
    }


def memorisation(synthetic: np.ndarray, members: np.ndarray, nonmembers: np.ndarray, *,
                 quantile: float = NEAR_COPY_QUANTILE, max_images: int = 2000,
                 seed: int = 0) -> dict[str, Any]:
    """Distances of ``synthetic`` images to ``members`` and to as many ``nonmembers``
    (all uint8 (N, C, H, W)), in ``pixel`` and ``feature`` space. Members and
    non-members are subsampled to the same size (at most ``max_images``), synthetic
    images to at most ``max_images``, with ``seed``."""
    rng = np.random.default_rng(seed)
    n = min(len(members), len(nonmembers), max_images)

    def take(images: np.ndarray, k: int) -> np.ndarray:
        if len(images) <= k:
            return images
        return images[np.sort(rng.choice(len(images), size=k, replace=False))]

    synth = take(synthetic, max_images)
    mem, non = take(members, n), take(nonmembers, n)
    features = FeatureSpace()
    return {
        "n_synthetic": len(synth), "n_per_side": n, "quantile": quantile,
        "pixel": _space_figures(pixels(synth), pixels(mem), pixels(non), quantile),
        "feature": _space_figures(features(synth).astype(np.float64),
                                  features(mem).astype(np.float64),
                                  features(non).astype(np.float64), quantile),
    }
