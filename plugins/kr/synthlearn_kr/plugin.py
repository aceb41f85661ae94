"""The hook that registers the ``kr`` arm with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, hookimpl

from synthlearn_kr.arm import KRArm
from synthlearn_kr.config import KRConfig


@hookimpl
def synthlearn_register_arms() -> list[ComponentSpec]:
    """The ``kr`` arm: a generator and conditioning like ``synthetic``, and an optional
    ``teacher:`` model (default: the arm's model)."""
    return [
        ComponentSpec("kr", KRConfig, KRArm,
                      "knowledge recycling: site teachers soft-label synthetic images, the "
                      "server trains on a fresh synthetic set every few epochs",
                      slots={"generator": "generator", "conditioning": "conditioning",
                             "teacher": "model"},
                      slot_defaults={"generator": "gan", "conditioning": "categorical",
                                     "teacher": None}),
    ]
