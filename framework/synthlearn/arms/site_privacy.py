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
An arm whose sites train several things (``dp_steps`` returns named phases) gets one
plan per phase under one noise level; a site sends one record per phase (named by its
``phase``) and its ε is their composition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synthlearn.errors import SynthlearnError
from synthlearn.models.private import (
    PrivateTraining,
    composed_epsilon,
    plan_private_phases,
    plan_private_training,
)
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

#: Of ``REFUSED_OPTIONS``, those that matter only for a model trained on the sites' real
#: images under DP; a model trained on what DP released (``TrainsOnSynthetic``) may
#: take them (the others send site statistics whatever the model trained on).
PER_EXAMPLE_OPTIONS: frozenset[str] = frozenset({"mixup"})

#: The name ``dp_models`` gives the arm's own model.
ARM_MODEL = "model"


def dp_component(slots: Mapping[str, Any]) -> Component | None:
    """The component in the slot of kind ``dp_mechanism`` (None: the arm is not DP)."""
    return next((c for c in slots.values() if c.kind == DP_KIND), None)


def _refused_options(training: TrainSettings, *, trained_privately: bool = True
                     ) -> list[str]:
    on = {"mixup": training.mixup > 0, "adapt_bn": training.adapt_bn,
          "calibrate": training.calibrate}
    return [f"{name} ({why})" for name, why in REFUSED_OPTIONS.items()
            if on[name] and (trained_privately or name not in PER_EXAMPLE_OPTIONS)]


def site_private_training(env: SiteEnv, n: int, batch_size: int, steps: int
                          ) -> PrivateTraining | None:
    """At a site: the DP plan for ``steps`` steps in batches of ``batch_size`` over the
    site's ``n`` images, from the arm's ``dp`` slot (None when the arm has none)."""
    comp = dp_component(env.slots)
    if comp is None:
        return None
    return plan_private_training(comp.build(), comp.use, n, batch_size, steps)


def site_private_phases(env: SiteEnv, n: int, phases: Mapping[str, tuple[int, int]]
                        ) -> dict[str, PrivateTraining] | None:
    """At a site: the DP plans of several training phases under one budget (phase name
    -> ``(batch size, steps)``), from the arm's ``dp`` slot (None when it has none)."""
    comp = dp_component(env.slots)
    if comp is None:
        return None
    return plan_private_phases(comp.build(), comp.use, n, phases)


def _plan(comp: Component, arm_object: Any, n: int, training: TrainSettings,
          slots: Mapping[str, Any]) -> dict[str | None, PrivateTraining]:
    """The server's plans for a site of ``n`` images, by phase (None: the arm's one)."""
    steps = arm_object.dp_steps(n, training, slots)
    if isinstance(steps, Mapping):
        return dict(plan_private_phases(comp.build(), comp.use, n,
                                        {str(k): (int(b), int(s))
                                         for k, (b, s) in steps.items()}))
    batch_size, count = steps
    return {None: plan_private_training(comp.build(), comp.use, n, int(batch_size),
                                        int(count))}


class PrivacyLedger:
    """The server's account of one DP arm: its own plan for every site (one per phase
    when a site trains several things), the steps each site reports (checked against
    that plan), and the ε they add up to."""

    def __init__(self, comp: Component,
                 plans: dict[int, dict[str | None, PrivateTraining]]) -> None:
        self.comp = comp
        self.plans = plans
        self.last: dict[tuple[int, str | None], dict[str, Any]] = {}

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
        """Account a site's record (``payload.meta["privacy"]``) of one task (of one
        phase: the record's ``phase`` names it)."""
        plans = self.plans.get(site)
        if plans is None:
            raise SynthlearnError(f"{source}: a privacy record from a site with no plan")
        if not isinstance(record, Mapping):
            raise SynthlearnError(f"{source}: the arm trains under DP but the site sent no "
                                  "privacy record")
        phase = record.get("phase")
        plan = plans.get(phase) if isinstance(phase, (str, type(None))) else None
        if plan is None:
            raise SynthlearnError(f"{source}: a privacy record of phase {phase!r}; the "
                                  "server planned "
                                  + ", ".join(repr(p) for p in plans))
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
        self.last[(site, phase)] = {k: v for k, v in record.items()
                                    if isinstance(v, (int, float, str, bool)) or v is None}

    def add_phases(self, site: int, records: Any, source: str) -> None:
        """Account a site's records of one task that trained every phase of its plan:
        a list with one record per phase (the order does not matter)."""
        planned = self.plans.get(site, {})
        if not isinstance(records, list) or len(records) != len(planned):
            raise SynthlearnError(f"{source}: the arm trains {len(planned)} phase(s) under "
                                  f"DP at each site, and the site sent "
                                  f"{len(records) if isinstance(records, list) else 'no'} "
                                  "privacy record(s) for them")
        phases = [r.get("phase") if isinstance(r, Mapping) else None for r in records]
        if sorted(map(str, phases)) != sorted(map(str, planned)):
            raise SynthlearnError(f"{source}: privacy records for phases "
                                  f"{sorted(map(str, phases))}, the server planned "
                                  f"{sorted(map(str, planned))}")
        for record in records:
            self.add(site, record, source)

    def summary(self, outside_budget: list[str] | None = None) -> dict[str, Any]:
        """The arm's privacy for metrics.json: the largest ε over the sites (each site's
        guarantee covers its own patients), and each site's; ``outside_budget`` names
        what the arm released from the sites' data without noise (e.g. class counts)."""
        sites = []
        for sid in sorted(self.plans):
            plans = self.plans[sid]
            if list(plans) == [None]:
                plan = plans[None]
                sites.append({**self.last.get((sid, None), {}), "site": sid,
                              "noise_multiplier": plan.noise_multiplier,
                              "sample_rate": plan.sample_rate, "steps": plan.steps,
                              "planned_steps": plan.planned_steps,
                              "epsilon": plan.epsilon()})
                continue
            phases = [{**self.last.get((sid, name), {}), "phase": name,
                       "sample_rate": plan.sample_rate, "steps": plan.steps,
                       "planned_steps": plan.planned_steps,
                       "epsilon_alone": plan.epsilon()}
                      for name, plan in plans.items()]
            for phase in phases:  # what the site level says once, and the record's ε
                for key in ("epsilon", "mechanism", "accountant", "delta",
                            "noise_multiplier"):  # (of the phase alone: epsilon_alone)
                    phase.pop(key, None)
            sites.append({"site": sid,
                          "noise_multiplier": next(iter(plans.values())).noise_multiplier,
                          "steps": sum(p.steps for p in plans.values()),
                          "planned_steps": sum(p.planned_steps for p in plans.values()),
                          "epsilon": composed_epsilon(plans), "phases": phases})
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


def _model_problem(comp: Component, model_comp: Component, dataset: Dataset, *,
                   trained_privately: bool = True) -> str | None:
    """Why ``model_comp`` cannot train under ``comp`` (None: it can): training options
    that spend site data outside the budget, or layers the mechanism cannot train (only
    for a model ``trained_privately`` on the sites' images)."""
    from synthlearn.sitework.sites import seeded_model

    factory = model_comp.build()
    refused = _refused_options(factory.training, trained_privately=trained_privately)
    if refused:
        return ("training under DP cannot take " + "; ".join(refused)
                + f" (set them off in {model_comp.path})")
    if not trained_privately:
        return None
    model = seeded_model(factory, 0, dataset.channels, dataset.num_classes,
                         dataset.image_size)
    shape = (dataset.channels, *dataset.image_size)
    layers = list(comp.build().unsupported(model, shape))
    if layers:
        return f"{comp.use!r} cannot train {model_comp.path} privately: {'; '.join(layers)}"
    return None


def dp_models(arm_object: Any, slots: Mapping[str, Any], models: Mapping[str, Any]
              ) -> set[str]:
    """Of ``models`` (``ARM_MODEL`` and the arm's model slots), the names of those the arm
    trains on the sites' real images under DP: what its ``dp_models(slots)`` says
    (``TrainsOnSynthetic``), or all of them when it has no such method."""
    method = getattr(arm_object, "dp_models", None)
    if not callable(method):
        return set(models)
    named = set(method(slots))
    unknown = named - set(models)
    if unknown:
        raise SynthlearnError(f"dp_models names {sorted(unknown)}, which are not the arm's "
                              f"models (known: {sorted(models)})")
    return named


def check_private_arms(recipe: Recipe, dataset: Dataset, sites: list[Site]) -> list[str]:
    """Before any work: each DP arm's problems, one line each at its ``dp`` slot's YAML
    path (an arm that cannot plan, training options that spend data outside the budget,
    layers the mechanism cannot train, a site whose budget cannot be met)."""
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
        # the arm's model, and any other model its slots name (kr's teacher); those the
        # arm says train on released data only (dp_models) keep batch norm and mixup
        models = {ARM_MODEL: arm.model, **{slot: c for slot, c in arm.component.slots.items()
                                           if c.kind == "model" and c is not arm.model}}
        try:
            private = dp_models(arm_object, arm.component.slots, models)
        except SynthlearnError as exc:
            problems.append(f"{where}: arm {arm.component.use!r} (distribution "
                            f"{arm.component.registered.distribution}): {exc}")
            continue
        problem = next(filter(None, (_model_problem(comp, m, dataset,
                                                    trained_privately=name in private)
                                     for name, m in models.items())), None)
        if problem:
            problems.append(f"{where}: {problem}")
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
