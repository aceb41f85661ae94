"""Conditioning schemes: what a generator is conditioned on, and new conditions to sample.

A scheme does three things for one site:

* ``summarize`` learns *aggregate statistics* of the site's labels and phenotype
  attributes (class counts; per class, the mean and covariance of continuous attributes,
  the rate of each binary one, the frequency of each categorical value). These
  statistics are JSON and travel with the site's output; no per-image value does.
* ``encode`` turns labels and attributes into ``Conditions``: the class index plus a
  float vector per image (standardised continuous attributes, binary attributes as
  -1/+1, categorical ones one-hot). A generator consumes nothing else.
* ``sample`` draws new labels and attributes that follow the site's own mix, so a
  site's synthetic pool mirrors its real one: class counts in the site's proportions
  (exactly, by largest remainder), attributes given the class from the statistics.

Built in: ``categorical`` (the class only) and ``phenotypic`` (the class plus the
dataset's phenotype attributes, all of them or the ones named).

Statistics that arrive from elsewhere (a site's payload, a generator file) are checked
with ``check_stats`` before anything is sized by them: ``sample`` trusts what it gets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from synthlearn.data.types import AttributeInfo, Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.sitework.sites import Site


@attrs.define(frozen=True, eq=False)
class Conditions:
    """Conditions for N images: ``labels`` int64 (N,) and ``vectors`` float32 (N, D).

    ``D`` is 0 for the categorical scheme.
    """

    labels: np.ndarray
    vectors: np.ndarray

    def __attrs_post_init__(self) -> None:
        n = len(self.labels)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n:
            raise ValueError(f"vectors must have shape ({n}, D), got {self.vectors.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def vector_size(self) -> int:
        return int(self.vectors.shape[1])

    def subset(self, index: np.ndarray) -> Conditions:
        return Conditions(self.labels[index], self.vectors[index])

    def check(self, n: int, num_classes: int, vector_size: int | None = None) -> None:
        """Raise ``SynthlearnError`` unless these are ``n`` conditions with labels in
        ``0..num_classes - 1``, finite vectors and, when given, vectors of
        ``vector_size`` entries (the size a generator was fitted with). A generator
        calls it in ``fit`` and ``sample`` before using the conditions."""
        if len(self) != n:
            raise SynthlearnError(f"{len(self)} conditions for {n} images")
        labels = self.labels
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise SynthlearnError(f"condition labels must be in 0..{num_classes - 1}, got "
                                  f"{labels.min()}..{labels.max()}")
        if vector_size is not None and self.vector_size != vector_size:
            raise SynthlearnError(f"condition vectors have size {self.vector_size}; "
                                  f"this generator was fitted with size {vector_size}")
        if not np.isfinite(self.vectors).all():
            raise SynthlearnError("condition vectors contain NaN or infinite values")


#: Most classes a site's statistics may describe.
MAX_CLASSES = 100_000

#: Most images a site's statistics may describe (each class count and their sum).
MAX_IMAGES = 100_000_000

#: Most phenotype attributes, and condition-vector entries, statistics may describe.
MAX_ATTRIBUTES = 256
MAX_VECTOR = 4096


def _brief(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile value can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: What an attribute name in statistics from elsewhere may look like.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    """A finite number that fits a float (not a bool, not an int beyond float range)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        return False
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:
        return False


class _StatsCheck:
    """Raises one ``SynthlearnError`` naming the field (``stats.per_class['1'].cov``) and
    ``where`` (a file, a site) for the first problem found."""

    def __init__(self, stats: Any, where: str | None) -> None:
        self.where = where
        if not isinstance(stats, dict):
            raise self.fail("stats", f"must be a JSON object, got {_brief(stats)}")
        self.stats = stats

    def fail(self, field: str, problem: str) -> SynthlearnError:
        return SynthlearnError(f"malformed conditioning statistics: {field} {problem}",
                               where=self.where)

    def get(self, entry: dict[str, Any], key: str, field: str, scheme: str) -> Any:
        if key not in entry:
            raise self.fail(f"{field}.{key}", f"is missing (the {scheme} scheme needs it)")
        return entry[key]

    def reals(self, value: Any, field: str, n: int) -> list[float]:
        """A list of exactly ``n`` finite numbers."""
        if not (isinstance(value, list) and len(value) == n and all(map(_is_real, value))):
            raise self.fail(field, f"must be a list of {n} finite numbers, got {_brief(value)}")
        return [float(v) for v in value]

    def names(self, value: Any, field: str) -> list[str]:
        """Distinct attribute names (they become array and file names: ``NAME``)."""
        if not (isinstance(value, list) and all(map(_is_name, value))
                and len(set(value)) == len(value) and len(value) <= MAX_ATTRIBUTES):
            raise self.fail(field, f"must be a list of distinct attribute names (letters, "
                            f"digits, '_', '.', '-'; at most {MAX_ATTRIBUTES}), got "
                            f"{_brief(value)}")
        return value

    def classes(self, scheme: str, num_classes: int | None) -> list[int]:
        """The scheme tag, ``num_classes`` and ``class_counts``; returns the counts."""
        stats = self.stats
        if stats.get("scheme") != scheme:
            raise self.fail("stats.scheme", f"is {_brief(stats.get('scheme'))}, expected "
                            f"{scheme!r} (statistics of another conditioning scheme?)")
        k = self.get(stats, "num_classes", "stats", scheme)
        if not _is_int(k) or not 1 <= k <= MAX_CLASSES:
            raise self.fail("stats.num_classes", f"must be an integer in 1..{MAX_CLASSES}, "
                            f"got {_brief(k)}")
        if num_classes is not None and k != num_classes:
            raise self.fail("stats.num_classes", f"is {k}, the dataset has {num_classes} "
                            "classes")
        counts = self.get(stats, "class_counts", "stats", scheme)
        if not (isinstance(counts, list) and len(counts) == k and all(
                _is_int(c) and 0 <= c <= MAX_IMAGES for c in counts)):
            raise self.fail("stats.class_counts", f"must be a list of {k} integers in "
                            f"0..{MAX_IMAGES} (one per class), got {_brief(counts)}")
        if not 1 <= sum(counts) <= MAX_IMAGES:
            raise self.fail("stats.class_counts", f"must add up to 1..{MAX_IMAGES} images, "
                            f"got {sum(counts)}")
        return [int(c) for c in counts]


def check_stats(scheme: Any, stats: Any, num_classes: int | None = None,
                where: str | None = None) -> None:
    """Check statistics that came from a site or a file before ``scheme.sample`` or
    ``encode`` use them: a ``SynthlearnError`` naming ``where`` and the field otherwise.

    ``num_classes`` is the dataset's, when known. A scheme from a plugin validates its
    own statistics by defining ``check_stats(stats, num_classes, where)``; one without
    it gets only the check that the statistics are a JSON object.
    """
    own = getattr(scheme, "check_stats", None)
    if own is None:
        _StatsCheck(stats, where)
        return
    own(stats, num_classes, where)


def proportional_counts(counts: Sequence[int], n: int) -> list[int]:
    """Split ``n`` in proportion to ``counts`` (largest remainder; ties to lower class)."""
    total = sum(counts)
    if total <= 0:
        raise ValueError("cannot sample classes from empty counts")
    exact = [n * c / total for c in counts]
    out = [int(np.floor(e)) for e in exact]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: n - sum(out)]:
        out[i] += 1
    return out


def _sample_labels(class_counts: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    per_class = proportional_counts(class_counts, n)
    labels = np.concatenate([np.full(k, c, dtype=np.int64) for c, k in enumerate(per_class)])
    return rng.permutation(labels)


@attrs.define(frozen=True)
class CategoricalConfig:
    """The categorical scheme takes no parameters: the condition is the class label."""


class CategoricalConditioning:
    """Condition on the class label only; new labels follow the site's class counts."""

    def __init__(self, config: CategoricalConfig) -> None:
        self.config = config

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Every dataset has classes: nothing to check."""

    def summarize(self, data: ImageData, num_classes: int,
                  attributes: Sequence[AttributeInfo]) -> dict[str, Any]:
        return {"scheme": "categorical", "num_classes": num_classes,
                "class_counts": data.class_counts(num_classes)}

    def encode(self, labels: np.ndarray, attributes: dict[str, np.ndarray],
               stats: dict[str, Any]) -> Conditions:
        labels = np.asarray(labels, dtype=np.int64)
        return Conditions(labels, np.zeros((len(labels), 0), dtype=np.float32))

    def check_stats(self, stats: Any, num_classes: int | None = None,
                    where: str | None = None) -> None:
        """Statistics from elsewhere: ``scheme``, ``num_classes`` (the dataset's when
        given) and ``class_counts`` (non-negative integers, one per class, not all 0)."""
        _StatsCheck(stats, where).classes("categorical", num_classes)

    def sample(self, stats: dict[str, Any], n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return _sample_labels(stats["class_counts"], n, rng), {}


@attrs.define(frozen=True)
class PhenotypicConfig:
    """``attributes``: the phenotype attributes to condition on, by name; empty means
    every attribute the dataset has."""

    attributes: list[str] = attrs.field(
        factory=list,
        metadata={"doc": "the phenotype attributes to condition on, by name; empty: every "
                         "attribute the dataset has"})


#: Smallest standard deviation used to standardise a continuous attribute.
_MIN_STD = 1e-6


class PhenotypicConditioning:
    """Condition on the class and phenotype attributes (continuous, binary, categorical).

    Given the class, continuous attributes are drawn from a multivariate normal with the
    site's per-class mean and covariance, clipped to the per-class range seen at the
    site; binary ones from the per-class rate; categorical ones from the per-class value
    frequencies. Discrete and continuous attributes are drawn independently given the
    class (the statistics hold no joint table, which would describe small groups of
    patients).
    """

    def __init__(self, config: PhenotypicConfig) -> None:
        self.config = config

    def _chosen(self, available: Sequence[AttributeInfo]) -> list[AttributeInfo]:
        by_name = {a.name: a for a in available}
        if not self.config.attributes:
            return list(available)
        return [by_name[name] for name in self.config.attributes]

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        if not dataset.attributes:
            raise SynthlearnError(
                f"phenotypic conditioning needs phenotype attributes, and dataset "
                f"{dataset.name!r} has none; use categorical")
        names = [a.name for a in dataset.attributes]
        unknown = [a for a in self.config.attributes if a not in names]
        if unknown:
            raise SynthlearnError(f"dataset {dataset.name!r} has no attribute "
                                  f"{', '.join(map(repr, unknown))}; it has {', '.join(names)}")

    def summarize(self, data: ImageData, num_classes: int,
                  attributes: Sequence[AttributeInfo]) -> dict[str, Any]:
        chosen = self._chosen(attributes)
        cont = [a.name for a in chosen if a.kind == "continuous"]
        binary = [a.name for a in chosen if a.kind == "binary"]
        categ = [a.name for a in chosen if a.kind == "categorical"]
        values = {name: np.asarray(data.attributes[name], dtype=np.float64)
                  for name in cont + binary + categ}
        stats: dict[str, Any] = {
            "scheme": "phenotypic",
            "num_classes": num_classes,
            "class_counts": data.class_counts(num_classes),
            "continuous": cont,
            "binary": binary,
            "categorical": {name: sorted({float(v) for v in values[name]}) for name in categ},
            "center": [float(values[n].mean()) for n in cont],
            "scale": [float(max(values[n].std(), _MIN_STD)) for n in cont],
            "per_class": {},
        }
        for c in range(num_classes):
            mask = data.labels == c
            if not mask.any():
                continue
            entry: dict[str, Any] = {}
            if cont:
                x = np.stack([values[n][mask] for n in cont], axis=1)
                d = len(cont)
                cov = (np.atleast_2d(np.cov(x, rowvar=False, bias=True)) if len(x) > 1
                       else np.zeros((d, d)))
                entry["mean"] = x.mean(axis=0).tolist()
                entry["cov"] = cov.tolist()
                entry["low"] = x.min(axis=0).tolist()
                entry["high"] = x.max(axis=0).tolist()
            entry["rate"] = [float(values[n][mask].mean()) for n in binary]
            entry["freq"] = {
                n: [float(np.mean(values[n][mask] == v)) for v in stats["categorical"][n]]
                for n in categ
            }
            stats["per_class"][str(c)] = entry
        return stats

    def encode(self, labels: np.ndarray, attributes: dict[str, np.ndarray],
               stats: dict[str, Any]) -> Conditions:
        labels = np.asarray(labels, dtype=np.int64)
        columns: list[np.ndarray] = []
        for name, center, scale in zip(stats["continuous"], stats["center"], stats["scale"],
                                       strict=True):
            columns.append((np.asarray(attributes[name], np.float64) - center) / scale)
        for name in stats["binary"]:
            columns.append(np.where(np.asarray(attributes[name]) > 0.5, 1.0, -1.0))
        for name, levels in stats["categorical"].items():
            value = np.asarray(attributes[name], np.float64)
            for level in levels:
                columns.append((value == level).astype(np.float64))
        if columns:
            vectors = np.stack(columns, axis=1).astype(np.float32)
        else:
            vectors = np.zeros((len(labels), 0), dtype=np.float32)
        return Conditions(labels, vectors)

    def check_stats(self, stats: Any, num_classes: int | None = None,
                    where: str | None = None) -> None:
        """Statistics from elsewhere: the categorical fields, then the attribute names,
        the standardisation, the condition-vector size and, for every class the site
        has, the per-class mean, covariance (symmetric, positive semi-definite), range,
        rates and level frequencies, all finite and of matching sizes."""
        check = _StatsCheck(stats, where)
        counts = check.classes("phenotypic", num_classes)
        cont = check.names(check.get(stats, "continuous", "stats", "phenotypic"),
                           "stats.continuous")
        binary = check.names(check.get(stats, "binary", "stats", "phenotypic"),
                             "stats.binary")
        levels = _check_levels(check, check.get(stats, "categorical", "stats", "phenotypic"))
        every = [*cont, *binary, *levels]
        if len(set(every)) != len(every) or len(every) > MAX_ATTRIBUTES:
            raise check.fail("stats", f"names {len(every)} attributes, some twice or more "
                             f"than {MAX_ATTRIBUTES}")
        size = len(cont) + len(binary) + sum(len(v) for v in levels.values())
        if size > MAX_VECTOR:
            raise check.fail("stats.categorical", f"makes condition vectors of {size} "
                             f"entries (at most {MAX_VECTOR})")
        check.reals(check.get(stats, "center", "stats", "phenotypic"), "stats.center",
                    len(cont))
        scale = check.reals(check.get(stats, "scale", "stats", "phenotypic"), "stats.scale",
                            len(cont))
        if any(v <= 0 for v in scale):
            raise check.fail("stats.scale", "must be positive")
        per_class = check.get(stats, "per_class", "stats", "phenotypic")
        if not isinstance(per_class, dict):
            raise check.fail("stats.per_class", "must be a JSON object")
        known = {str(c) for c in range(len(counts))}
        for key in per_class:
            if key not in known:
                raise check.fail("stats.per_class", f"has an entry for class {_brief(key)}, "
                                 f"not one of 0..{len(counts) - 1}")
        for c, count in enumerate(counts):
            if count:
                entry = check.get(per_class, str(c), "stats.per_class", "phenotypic")
                _check_class(check, entry, f"stats.per_class['{c}']", len(cont),
                             len(binary), levels)

    def sample(self, stats: dict[str, Any], n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        labels = _sample_labels(stats["class_counts"], n, rng)
        cont, binary = stats["continuous"], stats["binary"]
        categ: dict[str, list[float]] = stats["categorical"]
        out = {name: np.zeros(n, dtype=np.float32) for name in [*cont, *binary, *categ]}
        for key, entry in sorted(stats["per_class"].items(), key=lambda kv: int(kv[0])):
            index = np.flatnonzero(labels == int(key))
            k = len(index)
            if k == 0:
                continue
            if cont:
                draw = rng.multivariate_normal(np.asarray(entry["mean"]),
                                               np.asarray(entry["cov"]), size=k,
                                               method="eigh")
                draw = np.clip(draw, entry["low"], entry["high"])
                for j, name in enumerate(cont):
                    out[name][index] = draw[:, j]
            for name, rate in zip(binary, entry["rate"], strict=True):
                out[name][index] = (rng.random(k) < rate).astype(np.float32)
            for name, levels in categ.items():
                p = np.asarray(entry["freq"][name], dtype=np.float64)
                out[name][index] = np.asarray(levels)[rng.choice(len(levels), size=k,
                                                                 p=p / p.sum())]
        return labels, out


def _check_levels(check: _StatsCheck, value: Any) -> dict[str, list[float]]:
    """``categorical``: attribute name -> its distinct, finite level values."""
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES:
        raise check.fail("stats.categorical", f"must be a JSON object of attribute name -> "
                         f"levels, got {_brief(value)}")
    out: dict[str, list[float]] = {}
    for name, levels in value.items():
        field = f"stats.categorical[{_brief(name, 40)}]"
        if not _is_name(name):
            raise check.fail(field, "is not an attribute name (letters, digits, '_', '.', '-')")
        if not isinstance(levels, list) or not levels or len(levels) > MAX_VECTOR:
            raise check.fail(field, f"must be a non-empty list of levels, got {_brief(levels)}")
        out[name] = check.reals(levels, field, len(levels))
        if len(set(out[name])) != len(levels):
            raise check.fail(field, "repeats a level")
    return out


def _check_class(check: _StatsCheck, entry: Any, field: str, d: int, n_binary: int,
                 levels: dict[str, list[float]]) -> None:
    """One class's entry of ``per_class`` (see ``PhenotypicConditioning.check_stats``)."""
    if not isinstance(entry, dict):
        raise check.fail(field, "must be a JSON object")
    if d:
        check.reals(check.get(entry, "mean", field, "phenotypic"), f"{field}.mean", d)
        cov = check.get(entry, "cov", field, "phenotypic")
        if not (isinstance(cov, list) and len(cov) == d):
            raise check.fail(f"{field}.cov", f"must be a {d}x{d} matrix, got {_brief(cov)}")
        matrix = np.array([check.reals(row, f"{field}.cov", d) for row in cov])
        tolerance = 1e-6 * max(1.0, float(np.abs(matrix).max()))
        if (not np.allclose(matrix, matrix.T, atol=tolerance)
                or np.linalg.eigvalsh(matrix).min() < -tolerance):
            raise check.fail(f"{field}.cov", "is not a symmetric positive semi-definite "
                             "matrix")
        low = check.reals(check.get(entry, "low", field, "phenotypic"), f"{field}.low", d)
        high = check.reals(check.get(entry, "high", field, "phenotypic"), f"{field}.high", d)
        if any(a > b for a, b in zip(low, high, strict=True)):
            raise check.fail(f"{field}.low", "exceeds high")
    rate = check.reals(check.get(entry, "rate", field, "phenotypic"), f"{field}.rate",
                       n_binary)
    if any(not 0.0 <= r <= 1.0 for r in rate):
        raise check.fail(f"{field}.rate", "must hold rates in [0, 1]")
    freq = check.get(entry, "freq", field, "phenotypic")
    if not isinstance(freq, dict) or set(freq) != set(levels):
        raise check.fail(f"{field}.freq", f"must give frequencies for exactly "
                         f"{sorted(levels)}, got {_brief(freq)}")
    for name, values in levels.items():
        path = f"{field}.freq[{_brief(name, 40)}]"
        p = check.reals(freq[name], path, len(values))
        if any(v < 0 for v in p) or sum(p) <= 0:
            raise check.fail(path, "must be non-negative, not all 0")
