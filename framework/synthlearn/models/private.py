"""One training run on a site's real images under differential privacy: its plan (the
noise for the whole budget) and its record (the steps taken, the ε they cost).

A DP mechanism (kind ``dp_mechanism``, e.g. the ``opacus`` plugin) does the clipping,
the noise and the accounting; the core decides how many steps a site takes and draws
the batches: each step takes every image independently with probability
``batch_size / n`` (Poisson sampling, what the accountants assume), and an epoch is
``ceil(n / batch_size)`` steps. The noise is planned once for every step the site will
take in the arm (all rounds), so the ε reported is that of what leaves the site.

A site may train more than one thing on its images in one arm (``kr``: a teacher and a
generator). Each is a *phase* with its own batch size and steps; the phases share one
noise multiplier, planned so that the accountant's composition of all of them meets the
budget (``plan_private_phases``), and the site's ε is that composition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from synthlearn.errors import SynthlearnError

#: A noise multiplier above this leaves a model that learns nothing: refused as a plan.
MAX_NOISE_MULTIPLIER = 50.0


def dp_steps_per_epoch(n: int, batch_size: int) -> int:
    """Steps of one epoch under Poisson sampling: ``ceil(n / batch_size)``."""
    return max(1, math.ceil(n / batch_size))


@attrs.define
class PrivateTraining:
    """One site's training under DP: the mechanism (a ``DpMechanism``) and its name in
    the recipe (``use``), the noise multiplier planned for ``planned_steps`` steps at
    ``sample_rate``, and what the training loop did (``steps``, the mechanism's
    ``details``, e.g. the final clipping bound). ``phase`` names it when the site trains
    several things under one budget (``plan_private_phases``); its ``epsilon`` is then
    that of this phase alone, the guarantee of what it trained taken by itself."""

    mechanism: Any
    use: str
    noise_multiplier: float
    sample_rate: float
    planned_steps: int
    steps: int = 0
    details: dict[str, Any] = attrs.field(factory=dict)
    phase: str | None = None

    def epsilon(self, steps: int | None = None) -> float:
        """The accountant's ε after ``steps`` of this phase (default: the steps taken)."""
        return float(self.mechanism.epsilon(self.noise_multiplier, self.sample_rate,
                                            self.steps if steps is None else steps))

    def key(self) -> dict[str, Any]:
        """What identifies the plan in a site-cache key: work trained under another noise
        level, sample rate or budget of steps is other work."""
        return {"noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "planned_steps": self.planned_steps}

    def record(self) -> dict[str, Any]:
        """What a site sends with its result (JSON): the plan, the steps taken and the ε
        they cost, so that the server can check the plan and account across rounds."""
        return {
            "mechanism": self.use,
            "accountant": str(self.mechanism.accountant),
            "delta": float(self.mechanism.delta),
            "noise_multiplier": float(self.noise_multiplier),
            "sample_rate": float(self.sample_rate),
            "steps": int(self.steps),
            "planned_steps": int(self.planned_steps),
            "epsilon": self.epsilon(),
            **({"phase": self.phase} if self.phase is not None else {}),
            **{k: v for k, v in self.details.items() if k not in _RECORD_KEYS},
        }


_RECORD_KEYS = ("mechanism", "accountant", "delta", "noise_multiplier", "sample_rate",
                "steps", "planned_steps", "epsilon", "phase")


def plan_private_training(mechanism: Any, use: str, n: int, batch_size: int,
                          steps: int) -> PrivateTraining:
    """The plan for ``steps`` steps on ``n`` images in expected batches of
    ``batch_size``: the noise multiplier that keeps the whole run within the
    mechanism's budget. Raises ``SynthlearnError`` when no plan meets it: a batch not
    smaller than the site, δ not below 1/n (a guarantee that allows releasing one
    record outright), or a noise level so high the model would learn nothing."""
    _check_phase(mechanism, n, batch_size, steps)
    rate = batch_size / n
    sigma = _checked_sigma(mechanism.noise_multiplier(rate, steps, batch_size), use,
                           f"{steps} steps at sample rate {rate:.3g}")
    return PrivateTraining(mechanism, use, sigma, rate, int(steps))


def plan_private_phases(mechanism: Any, use: str, n: int,
                        phases: Mapping[str, tuple[int, int]]) -> dict[str, PrivateTraining]:
    """The plans of several phases at one site of ``n`` images (phase name ->
    ``(batch size, steps)``): one noise multiplier for all of them, the one that keeps
    their composition within the mechanism's budget (its ``composed_noise_multiplier``,
    ``synthlearn.interfaces.ComposesPhases``). One phase is planned alone, as
    ``plan_private_training`` does. Each plan's ``phase`` is its name."""
    if not phases:
        raise SynthlearnError("a DP plan needs at least one training phase")
    if len(phases) == 1:
        (name, (batch_size, steps)), = phases.items()
        plan = plan_private_training(mechanism, use, n, batch_size, steps)
        plan.phase = name
        return {name: plan}
    compose = getattr(mechanism, "composed_noise_multiplier", None)
    if not callable(compose):
        raise SynthlearnError(f"the DP mechanism {use!r} cannot plan several training phases "
                              f"under one budget ({', '.join(phases)}): it has no "
                              "composed_noise_multiplier (synthlearn.interfaces.ComposesPhases)")
    for name, (batch_size, steps) in phases.items():
        try:
            _check_phase(mechanism, n, batch_size, steps)
        except SynthlearnError as exc:
            raise SynthlearnError(f"{name}: {exc}") from None
    rates = {name: batch_size / n for name, (batch_size, _) in phases.items()}
    sigma = _checked_sigma(
        compose([(rates[name], int(steps)) for name, (_, steps) in phases.items()],
                min(batch_size for batch_size, _ in phases.values())),
        use, " and ".join(f"{steps} {name} steps at sample rate {rates[name]:.3g}"
                          for name, (_, steps) in phases.items()))
    return {name: PrivateTraining(mechanism, use, sigma, rates[name], int(steps), phase=name)
            for name, (_, steps) in phases.items()}


def composed_epsilon(plans: Mapping[Any, PrivateTraining]) -> float:
    """The ε of every phase of one site's plans together, after the steps each took (one
    plan: its own ε)."""
    if len(plans) == 1:
        return next(iter(plans.values())).epsilon()
    first = next(iter(plans.values()))
    return float(first.mechanism.composed_epsilon(
        first.noise_multiplier, [(p.sample_rate, p.steps) for p in plans.values()]))


def _check_phase(mechanism: Any, n: int, batch_size: int, steps: int) -> None:
    if n < 2:
        raise SynthlearnError(f"cannot train under DP on {n} image(s)")
    if batch_size >= n:
        raise SynthlearnError(f"DP samples each batch from the site's images: a batch of "
                              f"{batch_size} needs more than {n} images (lower the batch "
                              "size)")
    delta = float(mechanism.delta)
    if not 0.0 < delta < 1.0 / n:
        raise SynthlearnError(f"delta {delta:g} must be below 1/n = {1.0 / n:.3g} for a site "
                              f"of {n} images (else the guarantee allows releasing a record)")
    if steps < 1:
        raise SynthlearnError(f"a DP plan needs at least one step, got {steps}")


def _checked_sigma(value: Any, use: str, what: str) -> float:
    sigma = float(value)
    if not math.isfinite(sigma) or sigma < 0:
        raise SynthlearnError(f"the DP mechanism {use!r} returned noise multiplier {sigma!r}")
    if sigma > MAX_NOISE_MULTIPLIER:
        raise SynthlearnError(f"the budget needs noise multiplier {sigma:.1f} for {what} "
                              f"(above {MAX_NOISE_MULTIPLIER:g}: the model would learn "
                              "nothing); raise the budget or take fewer steps")
    return sigma
