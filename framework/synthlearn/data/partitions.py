"""How the training split becomes sites: iid, dirichlet (label skew) and by-attribute.

Every partitioner returns one sorted int64 index array per site; the arrays are disjoint,
non-empty and together cover the whole training split. The result depends only on the
data and the state of the ``rng`` passed in.
"""

from __future__ import annotations

import attrs
import numpy as np

from synthlearn.data.types import ImageData
from synthlearn.errors import DataError

# an attribute whose values are all whole numbers with at most this many distinct values
# is treated as categorical when ByAttributeConfig.kind is "auto"
MAX_AUTO_CATEGORIES = 16
# resampling attempts of the Dirichlet proportions before falling back to a repair
DIRICHLET_TRIES = 100


def check_sites(train: ImageData, n_sites: int) -> None:
    """Raise ``DataError`` unless 1 <= n_sites <= number of training images."""
    if n_sites < 1:
        raise DataError(f"partition: the number of sites must be at least 1, got {n_sites}")
    if n_sites > len(train):
        raise DataError(f"partition: cannot make {n_sites} sites from {len(train)} images")


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, test), each sorted int64, ``test_fraction`` of every class.

    A class with at least two images keeps at least one in each split. Raises
    ``DataError`` if ``test_fraction`` is not strictly between 0 and 1.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    train, test = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return (np.sort(np.concatenate(train)).astype(np.int64),
            np.sort(np.concatenate(test)).astype(np.int64))


def _finish(site_of: np.ndarray, n_sites: int) -> list[np.ndarray]:
    """Index arrays per site from a site number per image."""
    return [np.flatnonzero(site_of == k).astype(np.int64) for k in range(n_sites)]


@attrs.define(frozen=True)
class IIDConfig:
    """The iid partition takes no parameters."""


class IIDPartition:
    """Partition ``iid``: every site gets an (almost) equal share of every class.

    Each class is shuffled and dealt round-robin onto the sites, continuing where the
    previous class stopped, so per-class and total counts differ by at most one.
    """

    def __init__(self, config: IIDConfig | None = None) -> None:
        self.config = config or IIDConfig()

    def split(self, train: ImageData, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One sorted index array per site, stratified by class."""
        check_sites(train, n_sites)
        order = np.concatenate([rng.permutation(np.flatnonzero(train.labels == cls))
                                for cls in np.unique(train.labels)])
        site_of = np.empty(len(train), dtype=np.int64)
        site_of[order] = np.arange(len(order)) % n_sites
        return _finish(site_of, n_sites)


@attrs.define(frozen=True)
class DirichletConfig:
    """Label skew: per class, site shares ~ Dirichlet(alpha). Small alpha = strong skew.

    Every site gets at least ``min_per_site`` images (and never fewer than one).
    """

    alpha: float = attrs.field(
        default=0.5,
        metadata={"doc": "per class, site shares ~ Dirichlet(alpha); small alpha: strong label "
                         "skew"})
    min_per_site: int = attrs.field(
        default=10,
        metadata={"doc": "images every site gets at least (never fewer than one)"})


def _round_shares(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``shares`` (largest remainder)."""
    raw = shares * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:rest]] += 1
    return counts


def _repair(counts: np.ndarray, minimum: int) -> np.ndarray:
    """Move images from the largest sites to sites below ``minimum`` (counts: class x site).

    The donor gives from its most frequent class, so the label skew is kept as far as
    possible. Requires counts.sum() >= minimum * n_sites.
    """
    counts = counts.copy()
    while True:
        totals = counts.sum(axis=0)
        short = np.flatnonzero(totals < minimum)
        if short.size == 0:
            return counts
        site = int(short[0])
        donor = int(np.argmax(totals))
        cls = int(np.argmax(counts[:, donor]))
        move = min(minimum - int(totals[site]), int(totals[donor]) - minimum,
                   int(counts[cls, donor]))
        counts[cls, donor] -= move
        counts[cls, site] += move


class DirichletPartition:
    """Partition ``dirichlet``: label skew with Dirichlet(alpha) class shares per site.

    For each class the site shares are drawn from Dirichlet(alpha) and rounded to
    counts (largest remainder). Draws are repeated (at most ``DIRICHLET_TRIES`` times)
    until every site has ``min_per_site`` images; if none succeeds, the draw closest to
    it is repaired by moving images from the largest sites to the short ones.
    """

    def __init__(self, config: DirichletConfig | None = None) -> None:
        self.config = config or DirichletConfig()
        if not (np.isfinite(self.config.alpha) and self.config.alpha > 0):
            raise DataError(f"dirichlet partition: alpha must be > 0, got {self.config.alpha}")
        if self.config.min_per_site < 0:
            raise DataError("dirichlet partition: min_per_site must be >= 0, "
                            f"got {self.config.min_per_site}")

    def split(self, train: ImageData, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One sorted index array per site, label-skewed."""
        check_sites(train, n_sites)
        minimum = max(self.config.min_per_site, 1)
        n = len(train)
        if n < minimum * n_sites:
            raise DataError(f"dirichlet partition: cannot give {n_sites} sites at least "
                            f"{minimum} images each from {n} images")
        classes = np.unique(train.labels)
        sizes = np.array([np.count_nonzero(train.labels == c) for c in classes])
        best, best_missing = None, None
        for _ in range(DIRICHLET_TRIES):
            shares = rng.dirichlet(np.full(n_sites, self.config.alpha), size=len(classes))
            counts = np.stack([_round_shares(share, int(size))
                               for share, size in zip(shares, sizes, strict=True)])
            missing = int(np.clip(minimum - counts.sum(axis=0), 0, None).sum())
            if best_missing is None or missing < best_missing:
                best, best_missing = counts, missing
            if missing == 0:
                break
        counts = _repair(best, minimum)

        site_of = np.empty(n, dtype=np.int64)
        for row, cls in zip(counts, classes, strict=True):
            idx = rng.permutation(np.flatnonzero(train.labels == cls))
            site_of[idx] = np.repeat(np.arange(n_sites), row)
        return _finish(site_of, n_sites)


@attrs.define(frozen=True)
class ByAttributeConfig:
    """Sites by a phenotype attribute (feature skew), e.g. one scanner per hospital.

    ``kind`` is "categorical" (distinct values dealt round-robin onto sites),
    "continuous" (equal-size quantile bins) or "auto": categorical when all values are
    whole numbers with at most 16 distinct values, else continuous.
    """

    attribute: str = attrs.field(
        default="scanner",
        metadata={"doc": "the phenotype attribute that decides a site, e.g. one scanner per "
                         "hospital"})
    kind: str = attrs.field(
        default="auto",
        metadata={"doc": "`categorical` (distinct values dealt round-robin onto sites), "
                         "`continuous` (equal-size quantile bins) or `auto` (categorical when "
                         "all values are whole numbers with at most 16 distinct values)"})


class ByAttributePartition:
    """Partition ``by-attribute``: site k holds the images whose attribute maps to k.

    Categorical: the distinct values, sorted, are dealt round-robin onto the sites (so
    with as many values as sites, each site holds exactly one value). Continuous: the
    images sorted by value (ties by index) are cut into ``n_sites`` equal-size bins.
    """

    def __init__(self, config: ByAttributeConfig | None = None) -> None:
        self.config = config or ByAttributeConfig()
        if self.config.kind not in ("auto", "categorical", "continuous"):
            raise DataError("by-attribute partition: kind must be auto, categorical or "
                            f"continuous, got {self.config.kind!r}")

    def split(self, train: ImageData, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One sorted index array per site; ``rng`` is not needed (no randomness)."""
        check_sites(train, n_sites)
        name = self.config.attribute
        if name not in train.attributes:
            available = ", ".join(sorted(train.attributes)) or "none"
            raise DataError(f"by-attribute partition: unknown attribute {name!r} "
                            f"(available: {available})")
        values = np.asarray(train.attributes[name], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise DataError(f"by-attribute partition: attribute {name!r} has NaN or inf values")
        distinct = np.unique(values)
        kind = self.config.kind
        if kind == "auto":
            whole = bool(np.all(distinct == np.round(distinct)))
            kind = "categorical" if whole and len(distinct) <= MAX_AUTO_CATEGORIES else "continuous"
        if kind == "categorical":
            if len(distinct) < n_sites:
                raise DataError(f"by-attribute partition: attribute {name!r} has "
                                f"{len(distinct)} distinct values, fewer than {n_sites} sites")
            site_of = np.searchsorted(distinct, values) % n_sites
        else:
            order = np.argsort(values, kind="stable")
            site_of = np.empty(len(values), dtype=np.int64)
            for k, chunk in enumerate(np.array_split(order, n_sites)):
                site_of[chunk] = k
        return _finish(site_of, n_sites)
