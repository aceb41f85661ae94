"""How many synthetic images a site contributes: the params every arm that draws a pool
per site shares (the ``synthetic`` arm, the gan plugin's ``fedgan``)."""

from __future__ import annotations

import attrs

from synthlearn.params import positive_or_none


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
