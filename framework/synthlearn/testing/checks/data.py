"""``check_dataset`` and ``check_partition``: the contracts of kinds ``dataset`` and
``partition``."""

from __future__ import annotations

from typing import Any

import numpy as np

from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.recipes import tiny_dataset

__all__ = ["check_dataset", "check_partition"]


def _split_problem(split: ImageData, num_classes: int, shape: tuple[int, ...]) -> str | None:
    if not isinstance(split, ImageData):
        return f"a {type(split).__name__}, not ImageData"
    if len(split) == 0:
        return "empty"
    if split.images.shape[1:] != shape:
        return f"images of shape {split.images.shape[1:]}, the training split's are {shape}"
    if split.labels.dtype != np.int64:
        return f"labels of dtype {split.labels.dtype}, expected int64"
    if split.labels.min() < 0 or split.labels.max() >= num_classes:
        return f"labels outside 0..{num_classes - 1}"
    return None


def check_dataset(source: Any, *, seed: int = 0) -> None:
    """Check a dataset object against the ``DatasetSource`` contract. Its rules:

    * ``protocol``: it has ``load``;
    * ``load gives a Dataset``: ``load(seed)`` returns a ``synthlearn`` ``Dataset``;
    * ``splits are labelled uint8 images``: train and test are non-empty ``ImageData``
      of one image shape, int64 labels within the class names (validation too, when
      present);
    * ``class names are strings``, at least two of them;
    * ``declared attributes are present``: every ``AttributeInfo`` has an array in the
      training split;
    * ``load is deterministic for a seed``: a second ``load(seed)`` gives the same data.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_dataset", source)
    rules.protocol(source, ("load",))
    with rules.rule("load gives a Dataset"):
        dataset = source.load(seed)
    rules.require(isinstance(dataset, Dataset), "load gives a Dataset",
                  f"load returned {type(dataset).__name__}")
    names = dataset.class_names
    rules.require(len(names) >= 2 and all(isinstance(n, str) for n in names),
                  "class names are strings", f"class_names is {names!r}")
    shape = dataset.train.images.shape[1:]
    splits = {"train": dataset.train, "test": dataset.test}
    if dataset.validation is not None:
        splits["validation"] = dataset.validation
    for name, split in splits.items():
        problem = _split_problem(split, dataset.num_classes, shape)
        rules.require(problem is None, "splits are labelled uint8 images",
                      f"the {name} split: {problem}")
    missing = [a.name for a in dataset.attributes if a.name not in dataset.train.attributes]
    rules.require(not missing, "declared attributes are present",
                  f"attributes {missing} are declared but the training split has none")
    with rules.rule("load is deterministic for a seed"):
        again = source.load(seed)
    rules.require(again.train.fingerprint() == dataset.train.fingerprint()
                  and again.test.fingerprint() == dataset.test.fingerprint(),
                  "load is deterministic for a seed", f"two load({seed}) calls differ")


def check_partition(partitioner: Any, *, train: ImageData | None = None, seed: int = 0
                    ) -> None:
    """Check a partition object against the ``Partitioner`` contract on the training
    split of tiny phantom data (or ``train``). Its rules:

    * ``protocol``: it has ``split``;
    * ``one index array per site``: ``split(train, n, rng)`` returns ``n`` integer
      arrays, for 1 to 4 sites (a count it cannot make may be refused with a
      ``SynthlearnError``; at least one count above 1 must work);
    * ``sites are disjoint, non-empty and in range``;
    * ``split is deterministic for a seed``: the same rng seed, the same sites;
    * ``too many sites is a SynthlearnError``: more sites than images is refused with a
      ``SynthlearnError``, not a crash.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_partition", partitioner)
    rules.protocol(partitioner, ("split",))
    train = train if train is not None else tiny_dataset().train
    made = []
    for n_sites in (1, 2, 3, 4):
        with rules.rule("one index array per site"):
            try:
                parts = partitioner.split(train, n_sites, np.random.default_rng(seed))
            except SynthlearnError:  # a count this partition cannot make, refused cleanly
                continue
            parts = [np.asarray(p) for p in parts]
        made.append(n_sites)
        rules.require(len(parts) == n_sites and all(np.issubdtype(p.dtype, np.integer)
                                                    and p.ndim == 1 for p in parts),
                      "one index array per site",
                      f"{n_sites} sites asked, got {len(parts)} arrays of "
                      f"{sorted({str(p.dtype) for p in parts})}")
        joined = np.concatenate(parts)
        rules.require(all(len(p) for p in parts) and len(np.unique(joined)) == len(joined)
                      and joined.min() >= 0 and joined.max() < len(train),
                      "sites are disjoint, non-empty and in range",
                      f"{n_sites} sites of sizes {[len(p) for p in parts]} over "
                      f"{len(train)} images ({len(joined) - len(np.unique(joined))} repeated)")
        again = partitioner.split(train, n_sites, np.random.default_rng(seed))
        rules.require(all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True)),
                      "split is deterministic for a seed",
                      f"two splits into {n_sites} sites with one rng seed differ")
    rules.require(max(made, default=0) > 1, "one index array per site",
                  f"it made sites only for counts {made} of 1 to 4 (a SynthlearnError "
                  "for the others)")
    few = train.subset(np.arange(3))
    rules.raises_synthlearn_error(
        "too many sites is a SynthlearnError",
        lambda: partitioner.split(few, 5, np.random.default_rng(seed)),
        "split of 3 images into 5 sites")
