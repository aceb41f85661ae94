"""Checks that keep a run's figures meaningful: setups that would make a figure
meaningless are refused before any training, doubtful ones are flagged.

Refused (an error at ``validate`` and ``run``, before any training):

* a model component whose network does not map a batch of the dataset's images to
  ``(batch, num_classes)`` finite floats (``check_models``: one forward pass of two blank
  images per distinct model component, in eval mode, without gradients);
* a training split with fewer than two classes (accuracy 1.0 and AUC undefined mean
  nothing), and a class that has test images but no training image (no arm can learn
  it, so every arm scores 0 on it) (``check_classes``).

Flagged (``synthlearn.notices.warn``: stderr, ``metrics.json`` and the report):

* a *rare* class: present in the training split with fewer than ``MIN_CLASS_IMAGES``
  images, or fewer than ``MIN_CLASS_SHARE`` of the mean count of the classes present
  (typically one stray label that made an extra class);
* a class with no test image (the test figures cannot score it; with two classes the
  AUC is undefined), and a declared class with no image at all;
* a site that holds a single class when an arm trains and scores a model per site
  (``warn_single_class_sites``);
* a generator that collapsed: its synthetic images at a site have k-NN precision and
  recall both 0 against the real test images, or are constant images, or all the same
  image (pixel standard deviation under ``COLLAPSED_STD`` grey levels)
  (``warn_collapsed_generators``).

Divergence during training is caught where it happens (``train_classifier`` and the
gan plugin's fit loop check their losses), not here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from synthlearn import notices
from synthlearn.errors import RecipeError
from synthlearn.sitework.sites import seeded_model

if TYPE_CHECKING:
    from synthlearn.data.types import Dataset, ImageData
    from synthlearn.recipe import Component, Recipe
    from synthlearn.sitework.sites import Site

#: A training class with fewer images than this is flagged as rare.
MIN_CLASS_IMAGES = 5

#: ... and so is one with fewer than this share of the mean count of the classes present.
MIN_CLASS_SHARE = 0.01

#: Images in the forward pass that checks a model's output shape.
PROBE_BATCH = 2

#: Synthetic images whose pixel standard deviation (grey levels 0..255, within each
#: image or across the images at each pixel) is below this are taken as collapsed.
COLLAPSED_STD = 1.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _class_name(names: Sequence[str], index: int) -> str:
    return f"class {names[index]!r} (index {index})"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


# --------------------------------------------------------------------------- models


def distinct_models(recipe: Recipe) -> list[Component]:
    """The recipe's model component and every arm's own model, each once."""
    out: list[Component] = []
    for comp in [recipe.model, *(arm.model for arm in recipe.arms)]:
        if all(comp.path != seen.path for seen in out):
            out.append(comp)
    return out


def model_problem(comp: Component, dataset: Dataset) -> str | None:
    """Why the network of model component ``comp`` cannot classify ``dataset``'s images,
    or None when one forward pass of ``PROBE_BATCH`` blank images gives
    ``(PROBE_BATCH, num_classes)`` finite floats."""
    reg = comp.registered
    who = f"model {comp.use!r} (distribution {reg.distribution})"
    shape = (PROBE_BATCH, dataset.channels, *dataset.image_size)
    try:
        network = seeded_model(comp.build(), 0, dataset.channels, dataset.num_classes,
                               dataset.image_size)
        network.eval()
        first = next(network.parameters(), None)
        with torch.no_grad():
            out = network(torch.zeros(shape, device=None if first is None else first.device))
    except Exception as exc:  # a third-party network failing is the recipe's problem
        return f"{who} fails on a batch of this dataset's images {shape}: {_one_line(exc)}"
    expected = (PROBE_BATCH, dataset.num_classes)
    if not isinstance(out, torch.Tensor):
        return (f"{who} gives {type(out).__name__} outputs, expected a tensor of shape "
                f"{expected}")
    if tuple(out.shape) != expected or not out.is_floating_point():
        kind = "" if out.is_floating_point() else f"{out.dtype} "
        return (f"{who} gives {kind}outputs of shape {tuple(out.shape)}; the dataset has "
                f"{_plural(dataset.num_classes, 'class', 'classes')}, "
                f"so it must give {expected} floats")
    if not torch.isfinite(out).all():
        return f"{who} gives non-finite outputs (NaN or inf) on a batch of blank images"
    return None


def check_models(recipe: Recipe, dataset: Dataset) -> list[str]:
    """``<path>: <problem>`` for every distinct model component (``model_problem``)."""
    problems = []
    for comp in distinct_models(recipe):
        problem = model_problem(comp, dataset)
        if problem:
            problems.append(f"{comp.path}: {problem}")
    return problems


# --------------------------------------------------------------------------- classes


def rare_classes(counts: Sequence[int]) -> list[int]:
    """Indices of classes present in ``counts`` (training images per class) with fewer
    than ``MIN_CLASS_IMAGES`` images or under ``MIN_CLASS_SHARE`` of the mean count of
    the classes present."""
    present = [c for c in counts if c > 0]
    if not present:
        return []
    floor = max(MIN_CLASS_IMAGES, MIN_CLASS_SHARE * float(np.mean(present)))
    return [k for k, c in enumerate(counts) if 0 < c < floor]


def check_classes(dataset: Dataset, where: str = "$.data") -> None:
    """Refuse a dataset whose figures would mean nothing; warn about doubtful classes.

    Raises ``RecipeError`` (one line per problem at ``where``) for an empty split or
    labels outside the declared classes, a training split with fewer than two classes,
    and each class with test images but no training image.
    Warns (``notices.warn``) about rare training classes (``rare_classes``), classes with
    no test image and declared classes with no image at all.
    """
    names = list(dataset.class_names)
    k = len(names)
    splits = [("test", dataset.test)] if dataset.remote_sites else \
        [("training", dataset.train), ("test", dataset.test)]
    for split, data in splits:
        labels = data.labels
        if len(labels) == 0:
            raise RecipeError([f"{where}: the {split} split holds no image"])
        if k == 0 or labels.min() < 0 or labels.max() >= k:
            raise RecipeError([f"{where}: the {split} split has labels outside the "
                               f"{_plural(k, 'class', 'classes')} the dataset declares "
                               f"(0..{k - 1})"])
    train = np.asarray(dataset.train_class_counts())[:k]
    test = np.bincount(dataset.test.labels, minlength=k)[:k]
    problems = []
    present = np.flatnonzero(train)
    if len(present) < 2:
        which = (", ".join(f"{_class_name(names, int(c))}: {int(train[c])} images"
                           for c in present) or "no labelled image")
        problems.append(f"{where}: the training split holds a single class ({which}): "
                        "a classifier needs at least two, and its accuracy and AUC would "
                        "mean nothing")
    for c in np.flatnonzero((train == 0) & (test > 0)):
        problems.append(f"{where}: {_class_name(names, int(c))} has "
                        f"{_plural(int(test[c]), 'test image')} but no training image: no "
                        "arm can learn it, so every arm would score 0 on it")
    if problems:
        raise RecipeError(problems)
    mean = float(np.mean(train[present]))
    for c in rare_classes(train.tolist()):
        notices.warn(f"{_class_name(names, c)} has only "
                     f"{_plural(int(train[c]), 'training image')} (the mean class has "
                     f"{mean:.0f}): a stray label? its figures rest on almost nothing",
                     where=where)
    for c in np.flatnonzero((test == 0) & (train > 0)):
        notices.warn(f"{_class_name(names, int(c))} has no test image: the test figures "
                     "do not score it" + (" (the AUC is undefined)" if k == 2 else ""),
                     where=where)
    for c in np.flatnonzero((test == 0) & (train == 0)):
        notices.warn(f"{_class_name(names, int(c))} has no image at all: the models still "
                     "get an output for it", where=where)


# --------------------------------------------------------------------------- after an arm


def warn_single_class_sites(arm: str, site_ids: Sequence[int], sites: Sequence[Site],
                            class_names: Sequence[str]) -> None:
    """Warn for every site among ``site_ids`` whose training images hold a single class,
    when arm ``arm`` trained and scored a model per site there (its model can only ever
    predict that class)."""
    by_id = {s.id: s for s in sites}
    for sid in site_ids:
        site = by_id.get(sid)
        if site is None or len(site.data) == 0:
            continue
        classes = np.flatnonzero(site.data.class_counts(len(class_names)))
        if len(classes) == 1:
            notices.warn(f"the site's {len(site.data)} training images are all of "
                         f"{_class_name(class_names, int(classes[0]))}: the model it "
                         "trained can only predict that class, and the arm's mean over "
                         "sites counts it", where=f"arm {arm}, site {sid}")


def _pixel_spread(images: np.ndarray) -> tuple[float, float]:
    """Mean per-image pixel std and mean per-pixel std across images (grey levels)."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    within = float(flat.std(axis=1).mean())
    across = float(flat.std(axis=0).mean()) if len(images) > 1 else float("inf")
    return within, across


def collapse_reason(images: np.ndarray, fidelity: Mapping[str, Any] | None) -> str | None:
    """Why a site's synthetic ``images`` (uint8 N x C x H x W) look collapsed, or None.

    ``fidelity`` is the site's entry of the run's fidelity figures (``precision``,
    ``recall``), when it has one."""
    reasons = []
    if fidelity and fidelity.get("precision") == 0 and fidelity.get("recall") == 0:
        reasons.append("fidelity precision and recall are both 0 against the real test "
                       "images")
    if len(images):
        within, across = _pixel_spread(images)
        if within < COLLAPSED_STD:
            reasons.append(f"the images are constant (pixel std {within:.2f} grey levels "
                           "within an image)")
        elif across < COLLAPSED_STD:
            reasons.append(f"the images are all alike (pixel std {across:.2f} grey levels "
                           "across images)")
    return "; ".join(reasons) or None


def warn_collapsed_generators(arm: str, pools: Mapping[int, ImageData],
                              fidelity: Mapping[str, Any] | None) -> None:
    """Warn for every site whose synthetic images (``pools``, from arm ``arm``) look
    collapsed (``collapse_reason``); ``fidelity`` is the arm's fidelity entry (its
    ``sites`` list), when computed."""
    per_site = {row.get("site"): row for row in (fidelity or {}).get("sites", [])}
    for sid in sorted(pools):
        reason = collapse_reason(pools[sid].images, per_site.get(sid))
        if reason:
            notices.warn(f"the generator looks collapsed: {reason}; the arm trained on "
                         "images that do not resemble the site's data",
                         where=f"arm {arm}, site {sid}")


MEMORISED_FACTOR = 5.0
"""A site's synthetic images are flagged as memorised when their near-copy share is at
least this many times the near-copy quantile (what a generator that copied nothing
would show)."""


def warn_memorising_generators(arm: str, memorisation: Mapping[str, Any]) -> None:
    """Warn for every site whose synthetic images (from arm ``arm``) hold
    ``MEMORISED_FACTOR`` times more near copies of the site's own images, in pixel space,
    than chance; ``memorisation`` is the arm's memorisation entry (its ``sites`` list)."""
    for row in memorisation.get("sites", []):
        pixel, quantile = row.get("pixel") or {}, row.get("quantile")
        share = pixel.get("near_copies")
        if share is None or quantile is None or share < MEMORISED_FACTOR * quantile:
            continue
        notices.warn(f"{share:.1%} of the synthetic images are near copies of the site's "
                     f"own images (a generator that copied nothing: about {quantile:.0%}) "
                     f"and {pixel.get('closer_to_members', float('nan')):.0%} lie nearer "
                     "a member than a non-member: the generator memorised the site's "
                     "images (for a small site: fewer fitting steps, or the synthetic "
                     "arm's filter: {use: near-copy}, which removes pixel near copies; "
                     "reid matches identities and leaves most of them)",
                     where=f"arm {arm}, site {row.get('site')}")
