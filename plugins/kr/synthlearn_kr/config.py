"""The recipe params of the ``kr`` arm."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
from synthlearn.api import SyntheticSets, every_or_none

SHARES: tuple[str, ...] = ("models", "samples")
LABELLERS: tuple[str, ...] = ("site", "ensemble")


def _within(low: float, high: float, *, open_low: bool = False, open_high: bool = False
            ) -> Any:
    def check(_instance: object, attribute: attrs.Attribute, value: float) -> None:
        ok = (not isinstance(value, bool) and isinstance(value, (int, float))
              and (value > low if open_low else value >= low)
              and (value < high if open_high else value <= high))
        if not ok:
            lo, hi = "(" if open_low else "[", ")" if open_high else "]"
            raise ValueError(f"'{attribute.name}' must be in {lo}{low}, {high}{hi}, "
                             f"got {value!r}")
    return check


@attrs.frozen
class KRConfig(SyntheticSets):
    """Knowledge recycling (Lomurno & Matteucci, 2025) across sites.

    Every site fits the arm's generator and trains a teacher classifier (the ``teacher:``
    model, default the arm's model) on its own images. The server trains the student on
    synthetic images, ``multiple`` times the real data's size (or ``count`` images a site:
    ``ShareSize``), each with the target::

        alpha * teacher(x) ** (1 / temperature), normalised     (the soft label)
        + (1 - alpha) * smooth(onehot(conditioning label), label_smoothing)

    Cross-entropy is linear in the target, so this is the weighted sum of a distillation
    loss and the conditioning-label loss. ``labels`` picks the teacher: ``site`` (the
    teacher of the site whose generator made the image) or ``ensemble`` (the mean of
    every site's softened teacher). A fresh synthetic set is drawn every
    ``regenerate_every`` epochs of the student's training (null: one fixed set), so with
    1 the student never sees the same image twice. ``label_smoothing`` is the model's
    (``model.params.label_smoothing``), applied to the hard-label part of the target;
    ``mixup`` and the site steps (``calibrate``, ``adapt_bn``) are the model's too, taken
    by every arm alike.

    ``share: models`` sends each site's fitted generator and teacher; the server draws
    and labels the sets. ``share: samples`` keeps both at the site: the site sends every
    set, pre-drawn and labelled with its teacher's logits (with ``labels: ensemble`` the
    server also sends every set to the other sites to be labelled by their teachers).
    Both give the same numbers for the same seed.

    ``class_balance: equal`` draws the same number of every class a site has (``site``,
    the default: the site's own class mix).

    ``pool: K`` (with ``regenerate_every``) draws and labels each site's images once, a
    pool K times one set, and takes every set as a fresh seeded subset of it
    (``synthlearn.api.pool_subset``): K times one set's sampling instead of one set per
    epoch, for a generator slow to sample. With ``share: samples`` the pool crosses once.

    """

    __synthlearn_moved__: ClassVar[dict[str, str]] = {
        name: f"$.model.params.{name}"
        for name in ("mixup", "label_smoothing", "adapt_bn", "calibrate")}

    share: str = attrs.field(
        default="models", validator=attrs.validators.in_(SHARES),
        metadata={"doc": "`models`: each site sends its fitted generator and teacher and the "
                         "server draws and labels the sets; `samples`: the site sends every set,"
                         " pre-drawn and labelled by its teacher (the same numbers for the same "
                         "seed)"})
    labels: str = attrs.field(
        default="site", validator=attrs.validators.in_(LABELLERS),
        metadata={"doc": "which teacher labels an image: `site` (the teacher of the site whose "
                         "generator made it) or `ensemble` (the mean of every site's softened "
                         "teacher)"})
    alpha: float = attrs.field(
        default=0.5, validator=_within(0.0, 1.0),
        metadata={"doc": "weight of the teacher's soft label in the target; the rest is the "
                         "conditioning label, in [0, 1]"})
    temperature: float = attrs.field(
        default=2.0, validator=_within(0.0, math.inf, open_low=True),
        metadata={"doc": "softening of the teacher's output: `teacher(x) ** (1 / temperature)`, "
                         "normalised (> 0)"})
    regenerate_every: int | None = attrs.field(
        default=1, validator=every_or_none,
        metadata={"doc": "draw a fresh synthetic set every this many epochs of the student's "
                         "training (null: one fixed set; 1: never the same image twice)"})

    def set_for_epoch(self, epoch: int) -> int | None:
        """The set that starts at ``epoch`` (0-based), or None if the current one goes on."""
        if epoch == 0:
            return 0
        if self.regenerate_every is None or epoch % self.regenerate_every:
            return None
        return epoch // self.regenerate_every
