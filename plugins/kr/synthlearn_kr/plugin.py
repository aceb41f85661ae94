"""The hooks that register the ``kr`` arm and its site tasks with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, SiteTaskSpec, hookimpl

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
                             "teacher": "model", "filter": "filter", "dp": "dp_mechanism"},
                      slot_defaults={"generator": "gan", "conditioning": "categorical",
                                     "teacher": None, "filter": None, "dp": None}),
    ]


@hookimpl
def synthlearn_register_site_tasks() -> list[SiteTaskSpec]:
    """Fitting and teaching at a site, and labelling other sites' sets (what a remote
    site node may run)."""
    from synthlearn_kr.site_work import SiteWork, label, prepare

    return [SiteTaskSpec(prepare, SiteWork), SiteTaskSpec(label, SiteWork)]
