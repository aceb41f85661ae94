"""Differential privacy across an arm: the plan at each site, the check before any work,
and the ε the server reports.

An arm offers DP by declaring a slot of kind ``dp_mechanism`` (by convention ``dp``)
and a ``dp_steps(n, training)`` method (``synthlearn.interfaces.PrivatelyTrained``): the
batch size and the number of steps a site of ``n`` images trains on them over the whole
arm. From those, each site plans the noise for its whole budget
(``site_private_training``), trains with it and sends its record; the server plans the
same for every site, checks each record against its own plan and accounts the steps
across rounds (``PrivacyLedger``); ``check_private_arms`` refuses, before any work, a
recipe whose budget cannot be met or whose training would spend site data outside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synthlearn.errors import SynthlearnError
from synthlearn.models.private import PrivateTraining, plan_private_training
from synthlearn.models.training import TrainSettings

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext
    from synthlearn.data.types import Dataset
    from synthlearn.recipe import Component, Recipe
    from synthlearn.sitework.sites import Site, SiteEnv

DP_KIND = "dp_mechanism"

#: Training options that spend a site's data outside a DP budget, with the reason.
REFUSED_OPTIONS: dict[str, str] = {
    "mixup": "a mixed example depends on two records, which breaks the per-example bound",
    "adapt_bn": "the sites' batch-norm statistics would leave outside the budget",
    "calibrate": "the sites' class-mix biases would leave outside the budget",
}


def dp_component(slots: Mapping[str, Component]) -> Component | None:
    """The component in the slot of kind ``dp_mechanism`` (None: the arm is not DP)."""
    return next((c for c in slots.values() if c.kind == DP_KIND), None)


def _refused_options(training: TrainSettings) -> list[str]:
    on = {"mixup": training.mixup > 0, "adapt_bn": training.adapt_bn,
          "calibrate": training.calibrate}
    return [f"{name} ({why})" for name, why in REFUSED_OPTIONS.items() if on[name]]


def site_private_training(env: SiteEnv, n: int, batch_size: int, steps: int
                          ) -> PrivateTraining | None:
    """At a site: the DP plan for ``steps`` steps in batches of ``batch_size`` over the
    site's ``n`` images, from the arm's ``dp`` slot (None when the arm has none)."""
    comp = dp_component(env.slots)
    if comp is None:
        return None
    return plan_private_training(comp.build(), comp.use, n, batch_size, steps)


def _plan(comp: Component, arm_object: Any, n: int, training: TrainSettings,
          slots: Mapping[str, Component]) -> PrivateTraining:
    batch_size, steps = arm_object.dp_steps(n, training, slots)
    return plan_private_training(comp.build(), comp.use, n, int(batch_size), int(steps))


class PrivacyLedger:
    """The server's account of one DP arm: its own plan for every site, the steps each
    site reports (checked against that plan), and the ε they add up to."""

    def __init__(self, comp: Component, plans: dict[int, PrivateTraining]) -> None:
        self.comp = comp
        self.plans = plans
        self.last: dict[int, dict[str, Any]] = {}

    @classmethod
    def for_arm(cls, ctx: ArmContext) -> PrivacyLedger | None:
        """The ledger of ``ctx``'s arm, planned for each of its sites (None: not DP)."""
        comp = dp_component(ctx.arm.component.slots)
        if comp is None:
            return None
        slots = ctx.arm.component.slots
        plans = {site.id: _plan(comp, ctx.arm_object, len(site.data), ctx.training, slots)
                 for site in ctx.sites}
        return cls(comp, plans)

    def add(self, site: int, record: Any, source: str) -> None:
        """Account a site's record (``payload.meta["privacy"]``) of one task."""
        plan = self.plans.get(site)
        if plan is None:
            raise SynthlearnError(f"{source}: a privacy record from a site with no plan")
        if not isinstance(record, Mapping):
            raise SynthlearnError(f"{source}: the arm trains under DP but the site sent no "
                                  "privacy record")
        for key in ("noise_multiplier", "sample_rate"):
            value = record.get(key)
            mine = getattr(plan, key)
            if not isinstance(value, (int, float)) or not math.isclose(value, mine,
                                                                       rel_tol=1e-9):
                raise SynthlearnError(f"{source}: the site trained with {key} {value!r}, the "
                                      f"server's plan for it is {mine!r}")
        steps = record.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise SynthlearnError(f"{source}: privacy record 'steps' must be a count, got "
                                  f"{steps!r}")
        if plan.steps + steps > plan.planned_steps:
            raise SynthlearnError(f"{source}: the site has now taken {plan.steps + steps} DP "
                                  f"steps, more than the {plan.planned_steps} its noise was "
                                  "planned for")
        plan.steps += steps
        self.last[site] = {k: v for k, v in record.items()
                           if isinstance(v, (int, float, str, bool)) or v is None}

    def summary(self, outside_budget: list[str] | None = None) -> dict[str, Any]:
        """The arm's privacy for metrics.json: the largest ε over the sites (each site's
        guarantee covers its own patients), and each site's; ``outside_budget`` names
        what the arm released from the sites' data without noise (e.g. class counts)."""
        sites = []
        for sid in sorted(self.plans):
            plan = self.plans[sid]
            sites.append({**self.last.get(sid, {}), "site": sid,
                          "noise_multiplier": plan.noise_multiplier,
                          "sample_rate": plan.sample_rate, "steps": plan.steps,
                          "planned_steps": plan.planned_steps, "epsilon": plan.epsilon()})
        mechanism = self.comp.build()
        return {
            "epsilon": max(s["epsilon"] for s in sites),
            "delta": float(mechanism.delta),
            "accountant": str(mechanism.accountant),
            "mechanism": self.comp.use,
            "about": dict(mechanism.describe()),
            "sites": sites,
            **({"outside_budget": list(outside_budget)} if outside_budget else {}),
        }


def check_private_arms(recipe: Recipe, dataset: Dataset, sites: list[Site]) -> list[str]:
    """Before any work: each DP arm's problems, one line each at its ``dp`` slot's YAML
    path (an arm that cannot plan, training options that spend data outside the budget,
    layers the mechanism cannot train, a site whose budget cannot be met)."""
    from synthlearn.sitework.sites import seeded_model

    problems: list[str] = []
    for arm in recipe.arms:
        comp = dp_component(arm.component.slots)
        if comp is None:
            continue
        where = comp.path
        arm_object = arm.component.build()
        if not callable(getattr(arm_object, "dp_steps", None)):
            problems.append(f"{where}: arm {arm.component.use!r} declares a DP slot but has no"
                            " dp_steps(n, training, slots) (distribution "
                            f"{arm.component.registered.distribution})")
            continue
        factory = arm.model.build()
        refused = _refused_options(factory.training)
        if refused:
            problems.append(f"{where}: training under DP cannot take "
                            + "; ".join(refused) + f" (set them off in {arm.model.path})")
            continue
        model = seeded_model(factory, 0, dataset.channels, dataset.num_classes,
                             dataset.image_size)
        shape = (dataset.channels, *dataset.image_size)
        layers = list(comp.build().unsupported(model, shape))
        if layers:
            problems.append(f"{where}: {comp.use!r} cannot train {arm.model.path} "
                            f"privately: {'; '.join(layers)}")
            continue
        try:  # the arm's own refusal (e.g. FedProx) is one line, not one per site
            arm_object.dp_steps(len(sites[0].data), factory.training, arm.component.slots)
        except SynthlearnError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for site in sites:
            try:
                _plan(comp, arm_object, len(site.data), factory.training,
                      arm.component.slots)
            except SynthlearnError as exc:
                problems.append(f"{where}: site {site.id}: {exc}")
    return problems
