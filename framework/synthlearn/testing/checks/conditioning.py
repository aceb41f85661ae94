"""``check_conditioning``: the contract of kind ``conditioning``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from synthlearn.data.types import Dataset
from synthlearn.generation.conditioning import Conditions
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.recipes import tiny_dataset, tiny_sites

__all__ = ["check_conditioning"]


def check_conditioning(scheme: Any, *, dataset: Dataset | None = None, seed: int = 0) -> None:
    """Check a conditioning scheme object against the ``ConditioningScheme`` contract
    on tiny phantom data (which has continuous, binary and categorical attributes;
    ``dataset`` to use other data). Its rules:

    * ``protocol``: it has ``check``, ``summarize``, ``encode`` and ``sample``;
    * ``check accepts the data``: ``check(dataset, sites)`` passes;
    * ``statistics are a JSON object``: ``summarize`` gives a dict that survives a JSON
      round trip unchanged;
    * ``statistics are aggregate``: they do not grow with the number of images (four
      times the images, not much more JSON);
    * ``encode gives one condition per image``: ``Conditions`` of the right length,
      labels kept, a finite float vector per image;
    * ``encode works row by row``: encoding in two chunks gives the same conditions;
    * ``sample follows the statistics``: ``sample(stats, n, rng)`` gives ``n`` labels of
      existing classes and an array of ``n`` values per attribute, which ``encode``
      takes;
    * ``sample is deterministic for a seed``;
    * ``check_stats refuses malformed statistics`` (when the scheme has ``check_stats``):
      its own statistics pass, a non-object or mangled one raises ``SynthlearnError``.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_conditioning", scheme)
    rules.protocol(scheme, ("check", "summarize", "encode", "sample"))
    dataset = dataset if dataset is not None else tiny_dataset(n_train=240)
    sites = tiny_sites(dataset, 2, seed)
    k, attrs_ = dataset.num_classes, dataset.attributes
    with rules.rule("check accepts the data"):
        scheme.check(dataset, sites)
    data = sites[0].data
    with rules.rule("statistics are a JSON object"):
        stats = scheme.summarize(data, k, attrs_)
        rules.require(isinstance(stats, dict), "statistics are a JSON object",
                      f"summarize returned {type(stats).__name__}")
        text = json.dumps(stats, sort_keys=True)
        rules.require(json.loads(text) == stats, "statistics are a JSON object",
                      "the statistics change in a JSON round trip")
    small = data.subset(np.arange(min(len(data), 30)))
    big = dataset.train
    small_len = len(json.dumps(scheme.summarize(small, k, attrs_)))
    big_len = len(json.dumps(scheme.summarize(big, k, attrs_)))
    rules.require(big_len <= 2 * small_len + 256, "statistics are aggregate",
                  f"{len(small)} images give {small_len} characters of statistics, "
                  f"{len(big)} give {big_len}: they grow with the data")

    with rules.rule("encode gives one condition per image"):
        conditions = scheme.encode(data.labels, data.attributes, stats)
    n = len(data)
    rules.require(isinstance(conditions, Conditions) and len(conditions) == n
                  and np.array_equal(conditions.labels, data.labels)
                  and conditions.vectors.shape[0] == n
                  and np.isfinite(conditions.vectors).all(),
                  "encode gives one condition per image",
                  f"encode of {n} images gave {_describe(conditions)}")
    half = n // 2
    parts = [scheme.encode(data.labels[s], {a: v[s] for a, v in data.attributes.items()}, stats)
             for s in (slice(0, half), slice(half, n))]
    rules.require(np.array_equal(np.concatenate([p.vectors for p in parts]),
                                 conditions.vectors), "encode works row by row",
                  "encoding the images in two chunks gives other vectors than in one")

    with rules.rule("sample follows the statistics"):
        labels, values = scheme.sample(stats, 50, np.random.default_rng(seed))
        labels = np.asarray(labels)
        rules.require(labels.shape == (50,) and np.issubdtype(labels.dtype, np.integer)
                      and labels.min() >= 0 and labels.max() < k,
                      "sample follows the statistics",
                      f"50 labels expected in 0..{k - 1}, got {labels.dtype} {labels.shape}")
        bad = {a: np.shape(v) for a, v in values.items() if np.shape(v) != (50,)}
        rules.require(not bad, "sample follows the statistics",
                      f"attribute arrays of the wrong shape: {bad}")
        scheme.encode(labels, values, stats)
    again_labels, again_values = scheme.sample(stats, 50, np.random.default_rng(seed))
    same = np.array_equal(again_labels, labels) and all(
        np.array_equal(again_values[a], v) for a, v in values.items())
    rules.require(same, "sample is deterministic for a seed",
                  "two samples with one rng seed differ")

    check_stats = getattr(scheme, "check_stats", None)
    if check_stats is not None:
        with rules.rule("check_stats refuses malformed statistics"):
            check_stats(stats, k, "site 0")
        for what, bad_stats in [("a list", [1, 2]),
                                ("every field a string", {key: "?" for key in stats})]:
            rules.raises_synthlearn_error(
                "check_stats refuses malformed statistics",
                lambda s=bad_stats: check_stats(s, k, "site 0"), f"statistics {what}",
                source="site 0")


def _describe(value: Any) -> str:
    if isinstance(value, Conditions):
        return f"Conditions of {len(value)} with vectors {value.vectors.shape}"
    return type(value).__name__
