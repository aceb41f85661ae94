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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from synthlearn.data.types import AttributeInfo, Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.sites import Site


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

    def sample(self, stats: dict[str, Any], n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return _sample_labels(stats["class_counts"], n, rng), {}


@attrs.define(frozen=True)
class PhenotypicConfig:
    """``attributes``: the phenotype attributes to condition on, by name; empty means
    every attribute the dataset has."""

    attributes: list[str] = attrs.field(factory=list)


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
