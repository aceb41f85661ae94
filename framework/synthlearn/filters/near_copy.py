"""The ``near-copy`` filter: reject a synthetic image closer, in pixels, to one of the
site's images than almost any two of the site's images are to each other
(``synthlearn.evaluation.memorisation``: the ``quantile`` of the members' leave-one-out
nearest-neighbour distances)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.evaluation.memorisation import (
    NEAR_COPY_QUANTILE,
    near_copy_threshold,
    nearest,
    pixels,
)
from synthlearn.sitework.sites import Site

#: The reason ``screen`` gives for a rejected candidate.
REASON = "near-copy"


def _quantile(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or not 0.0 < value < 1.0:
        raise ValueError(f"'{attribute.name}' must be a quantile in (0, 1), e.g. 0.01, "
                         f"got {value!r}")


@attrs.frozen
class NearCopyConfig:
    """Reject candidates closer to a site image than the ``quantile`` of the site
    images' distances to their nearest other site image (pixel space)."""

    quantile: float = attrs.field(
        default=NEAR_COPY_QUANTILE, validator=_quantile,
        metadata={"doc": "a quantile in (0, 1): a candidate closer to one of the site's images"
                         " than this share of the site's images are to their nearest other "
                         "one is rejected"})


class NearCopyFilter:
    """Pixel-distance screening of synthetic candidates (kind ``filter``)."""

    def __init__(self, config: NearCopyConfig) -> None:
        self.config = config
        self._members: np.ndarray | None = None
        self._threshold = 0.0

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """A site needs two images to set the threshold."""
        for site in sites:
            if len(site.data) < 2:
                raise SynthlearnError(f"site {site.id} has {len(site.data)} image(s); the "
                                      "near-copy filter needs at least 2")

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        """Keep the site's images and the distance threshold they set."""
        self._members = pixels(real.images)
        self._threshold = near_copy_threshold(self._members, self.config.quantile)

    def screen(self, candidates: ImageData) -> list[str | None]:
        """``near-copy`` for each candidate closer to a site image than the threshold."""
        if self._members is None:
            raise SynthlearnError("the near-copy filter has not been fitted")
        if not len(candidates):
            return []
        close = nearest(pixels(candidates.images), self._members) < self._threshold
        return [REASON if c else None for c in close]

    def describe(self) -> Mapping[str, Any]:
        """The quantile and the pixel distance it set."""
        return {"quantile": self.config.quantile, "threshold": self._threshold}
