"""How many synthetic images a site contributes, and in how many sets: the params every
arm that draws a pool per site shares (``ShareSize``: the ``synthetic`` arm, the gan
plugin's ``fedgan``; ``SyntheticSets``: the ``synthetic`` arm and the kr plugin's arm,
whose models train on sets redrawn during training)."""

from __future__ import annotations

import math

import attrs

from synthlearn.params import positive_or_none

#: How a site's synthetic images divide among its classes: ``site`` (its own class mix)
#: or ``equal`` (the same number of every class it has).
CLASS_BALANCES: tuple[str, ...] = ("site", "equal")


def every_or_none(_instance: object, attribute: attrs.Attribute, value: int | None) -> None:
    """An attrs validator for ``regenerate_every``-like params: an integer >= 1, or None
    (one fixed set)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ValueError(f"'{attribute.name}' must be an integer >= 1 or null (one fixed "
                         f"set), got {value!r}")


def _pool(instance: SyntheticSets, attribute: attrs.Attribute, value: int | None) -> None:
    every_or_none(instance, attribute, value)  # validators run once every field is set
    if value is not None and instance.regenerate_every is None:
        raise ValueError("'pool' needs 'regenerate_every' (it is what the redrawn sets are "
                         "taken from)")


@attrs.frozen
class ShareSize:
    """Each site contributes ``multiple`` times its own number of images (null: 1.0) or,
    when ``count`` is set instead, exactly ``count`` images; setting both is an error.
    A config class inherits these two params (and ``images_for``) from it."""

    multiple: float | None = attrs.field(
        default=None, validator=positive_or_none,
        metadata={"doc": "synthetic images per site, as a multiple of its real images (null: "
                         "1.0)"})
    count: int | None = attrs.field(
        default=None, validator=positive_or_none,
        metadata={"doc": "exactly this many synthetic images per site instead of `multiple` (not"
                         " both)"})

    def __attrs_post_init__(self) -> None:
        if self.multiple is not None and self.count is not None:
            raise ValueError("set either 'multiple' or 'count', not both")

    def images_for(self, n_real: int) -> int:
        """How many synthetic images a site with ``n_real`` images contributes."""
        if self.count is not None:
            return self.count
        return max(1, round((1.0 if self.multiple is None else self.multiple) * n_real))


@attrs.frozen
class SyntheticSets(ShareSize):
    """The sets a model trained on synthetic images gets, each of ``ShareSize``'s size,
    for a config class to inherit: a fresh set every
    ``regenerate_every`` epochs (null: one fixed set), each ``class_balance``d, and
    either drawn one by one or (``pool: K``) all taken as fresh seeded subsets of one
    pool K times one set's size, drawn once (``synthlearn.api.pool_subset``): K sets'
    sampling instead of one per set, for a generator slow to sample. A subclass may
    redefine ``regenerate_every`` with its own default and doc."""

    regenerate_every: int | None = attrs.field(
        default=None, validator=every_or_none,
        metadata={"doc": "train on a fresh synthetic set every N epochs (null: one fixed "
                         "set); with `share: samples` a site sends every set (or its pool)"})
    class_balance: str = attrs.field(
        default="site", validator=attrs.validators.in_(CLASS_BALANCES),
        metadata={"doc": "classes of a site's synthetic images: `site` (in the site's own "
                         "proportions) or `equal` (the same number of every class the site "
                         "has)"})
    pool: int | None = attrs.field(
        default=None, validator=_pool,
        metadata={"doc": "with `regenerate_every`: draw each site's images once, a pool this "
                         "many times one set, and take every set as a fresh seeded subset of "
                         "it (null: draw every set); for generators slow to sample, e.g. "
                         "diffusion on a CPU"})

    def sets_for(self, epochs: int) -> int:
        """How many synthetic sets a model trained for ``epochs`` epochs uses."""
        if self.regenerate_every is None:
            return 1
        return max(1, math.ceil(epochs / self.regenerate_every))

    def draws_for(self, epochs: int) -> int:
        """How many synthetic sets each site draws from its generator (one pool, or every
        set)."""
        return 1 if self.pool is not None else self.sets_for(epochs)

    def drawn_for(self, n_real: int) -> int:
        """How many images each draw of a site with ``n_real`` images holds."""
        return self.images_for(n_real) * (self.pool or 1)
