"""The opacus mechanism's accounting: ε against Opacus's own accountant, the noise it
plans for a budget, and the plans no noise can meet."""

from __future__ import annotations

import pytest

pytest.importorskip("opacus", reason="opacus (a dependency of synthlearn-dp) is not installed")
pytest.importorskip("synthlearn_dp", reason="the synthlearn-dp plugin is not installed")

from dp_helpers import opacus_mechanism  # noqa: E402
from opacus.accountants import PRVAccountant, RDPAccountant  # noqa: E402
from synthlearn.api import SynthlearnError, plan_private_training  # noqa: E402


def _steps_through_opacus(accountant: RDPAccountant | PRVAccountant, sigma: float, q: float,
                          steps: int, delta: float) -> float:
    for _ in range(steps):  # what Opacus's optimizer hook does once per step
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    return float(accountant.get_epsilon(delta=delta))


@pytest.mark.parametrize(("name", "accountant"), [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_epsilon_matches_opacus_accountant_stepped_once_per_step(name: str, accountant: type
                                                                 ) -> None:
    mechanism = opacus_mechanism(accountant=name, target_epsilon=None, noise_multiplier=1.0)
    q = 64 / 1569
    ours = mechanism.epsilon(1.0, q, 24)
    theirs = _steps_through_opacus(accountant(), 1.0, q, 24, 1e-5)
    assert ours == pytest.approx(theirs, rel=1e-3)
    if name == "rdp":  # PrivacyEngine's figure after its 24-step epoch (docs/design/dp.md)
        assert ours == pytest.approx(2.236, abs=0.002)
    assert mechanism.epsilon(1.0, q, 0) == 0.0
    assert mechanism.epsilon(1.0, q, 48) > ours  # more steps spend more


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_the_planned_noise_meets_the_budget_and_not_much_more(target: float) -> None:
    mechanism = opacus_mechanism(target_epsilon=target)
    plan = plan_private_training(mechanism, "opacus", n=809, batch_size=64, steps=130)
    spent = plan.epsilon(130)
    assert target - 0.05 <= spent <= target
    assert plan.sample_rate == pytest.approx(64 / 809)
    # more noise for a smaller budget
    assert plan.noise_multiplier > plan_private_training(
        opacus_mechanism(target_epsilon=target * 2), "opacus", 809, 64, 130).noise_multiplier


def test_a_plan_that_cannot_be_met_is_refused() -> None:
    mechanism = opacus_mechanism(target_epsilon=3.0)
    with pytest.raises(SynthlearnError, match="a batch of 64 needs more than 50 images"):
        plan_private_training(mechanism, "opacus", 50, 64, 10)
    with pytest.raises(SynthlearnError, match=r"delta 0.01 must be below 1/n = 0.005"):
        plan_private_training(opacus_mechanism(delta=0.01), "opacus", 200, 16, 10)
    with pytest.raises(SynthlearnError, match="no noise multiplier meets ε 0.01 at δ 1e-05"):
        plan_private_training(opacus_mechanism(target_epsilon=0.01), "opacus", 100, 50, 100)
    with pytest.raises(SynthlearnError, match="above 50: the model would learn nothing"):
        plan_private_training(opacus_mechanism(target_epsilon=None, noise_multiplier=60.0),
                              "opacus", 100, 50, 10)
    with pytest.raises(SynthlearnError, match="adaptive clipping needs the noise multiplier"):
        plan_private_training(opacus_mechanism(target_epsilon=0.5, clipping="adaptive"), "opacus",
                              800, 16, 500)



@pytest.mark.parametrize(("name", "accountant"), [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_phases_compose_as_opacus_accountant_composes_their_steps(name: str, accountant: type
                                                                  ) -> None:
    # a teacher (batch 32 of 809, 260 steps) and a generator's discriminator (batch 16,
    # 400 steps) at one site, one noise multiplier
    mechanism = opacus_mechanism(accountant=name, target_epsilon=None, noise_multiplier=1.5)
    phases = [(32 / 809, 260), (16 / 809, 400)]
    ours = mechanism.composed_epsilon(1.5, phases)
    counted = accountant()
    for q, steps in phases:
        for _ in range(steps):
            counted.step(noise_multiplier=1.5, sample_rate=q)
    assert ours == pytest.approx(float(counted.get_epsilon(delta=1e-5)), rel=1e-3)
    # the two together cost more than either alone, and no more than both added up
    alone = [mechanism.epsilon(1.5, q, t) for q, t in phases]
    assert max(alone) < ours <= sum(alone)
    assert mechanism.composed_epsilon(1.5, phases[:1]) == pytest.approx(alone[0])


@pytest.mark.parametrize("target", [2.0, 8.0])
def test_phases_share_one_noise_level_that_meets_the_budget_together(target: float) -> None:
    from synthlearn.api import composed_epsilon, plan_private_phases

    mechanism = opacus_mechanism(target_epsilon=target)
    plans = plan_private_phases(mechanism, "opacus", 809,
                                {"teacher": (32, 260), "generator": (16, 400)})
    assert [p.phase for p in plans.values()] == ["teacher", "generator"]
    assert len({p.noise_multiplier for p in plans.values()}) == 1
    for plan in plans.values():
        plan.steps = plan.planned_steps
    assert target - 0.02 <= composed_epsilon(plans) <= target
    # more noise than either phase alone would need for the same budget
    alone = plan_private_training(mechanism, "opacus", 809, 16, 400)
    assert plans["generator"].noise_multiplier > alone.noise_multiplier
    assert plans["teacher"].record()["phase"] == "teacher"


def test_phases_the_accountant_cannot_compose_are_refused() -> None:
    from synthlearn.api import plan_private_phases

    with pytest.raises(SynthlearnError, match="gdp accountant cannot compose"):
        plan_private_phases(opacus_mechanism(accountant="gdp"), "opacus", 809,
                            {"teacher": (32, 26), "generator": (16, 40)})
    with pytest.raises(SynthlearnError,
                       match="teacher: DP samples each batch.*a batch of 900 needs more than"):
        plan_private_phases(opacus_mechanism(), "opacus", 809,
                            {"teacher": (900, 26), "generator": (16, 40)})
