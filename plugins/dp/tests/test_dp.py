"""The opacus DP mechanism: its accountant against Opacus's own, the noise it plans,
clipping and noise in the core's training loop, determinism, and every setting refused
before any work (one line naming the arm's ``dp`` slot)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("opacus", reason="opacus (a dependency of synthlearn-dp) is not installed")
pytest.importorskip("synthlearn_dp", reason="the synthlearn-dp plugin is not installed")

from opacus.accountants import PRVAccountant, RDPAccountant  # noqa: E402
from synthlearn.api import (  # noqa: E402
    ImageData,
    SynthlearnError,
    TrainSettings,
    plan_private_training,
    seeded_model,
    train_classifier,
)
from synthlearn.testing import installed, run_recipe, small_recipe  # noqa: E402
from synthlearn_dp.config import OpacusConfig  # noqa: E402
from synthlearn_dp.mechanism import OpacusMechanism  # noqa: E402

MODEL = {"use": "timm", "params": {"arch": "test_resnet", "norm": "group", "epochs": 2,
                                   "batch_size": 16, "device": "cpu"}}


def _mechanism(**params: object) -> OpacusMechanism:
    return OpacusMechanism(OpacusConfig(**params))


def _steps_through_opacus(accountant: RDPAccountant | PRVAccountant, sigma: float, q: float,
                          steps: int, delta: float) -> float:
    for _ in range(steps):  # what Opacus's optimizer hook does once per step
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    return float(accountant.get_epsilon(delta=delta))


# --------------------------------------------------------------------------- accounting


@pytest.mark.parametrize(("name", "accountant"), [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_epsilon_matches_opacus_accountant_stepped_once_per_step(name: str, accountant: type
                                                                 ) -> None:
    mechanism = _mechanism(accountant=name, target_epsilon=None, noise_multiplier=1.0)
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
    mechanism = _mechanism(target_epsilon=target)
    plan = plan_private_training(mechanism, "opacus", n=809, batch_size=64, steps=130)
    spent = plan.epsilon(130)
    assert target - 0.05 <= spent <= target
    assert plan.sample_rate == pytest.approx(64 / 809)
    # more noise for a smaller budget
    assert plan.noise_multiplier > plan_private_training(
        _mechanism(target_epsilon=target * 2), "opacus", 809, 64, 130).noise_multiplier


def test_a_plan_that_cannot_be_met_is_refused() -> None:
    mechanism = _mechanism(target_epsilon=3.0)
    with pytest.raises(SynthlearnError, match="a batch of 64 needs more than 50 images"):
        plan_private_training(mechanism, "opacus", 50, 64, 10)
    with pytest.raises(SynthlearnError, match=r"delta 0.01 must be below 1/n = 0.005"):
        plan_private_training(_mechanism(delta=0.01), "opacus", 200, 16, 10)
    with pytest.raises(SynthlearnError, match="no noise multiplier meets ε 0.01 at δ 1e-05"):
        plan_private_training(_mechanism(target_epsilon=0.01), "opacus", 100, 50, 100)
    with pytest.raises(SynthlearnError, match="above 50: the model would learn nothing"):
        plan_private_training(_mechanism(target_epsilon=None, noise_multiplier=60.0),
                              "opacus", 100, 50, 10)
    with pytest.raises(SynthlearnError, match="adaptive clipping needs the noise multiplier"):
        plan_private_training(_mechanism(target_epsilon=0.5, clipping="adaptive"), "opacus",
                              800, 16, 500)


# --------------------------------------------------------------------------- training


def _data(n: int = 48, seed: int = 0) -> ImageData:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, 1, 16, 16)).astype(np.uint8)
    images[labels == 1, :, 4:12, 4:12] += 150
    return ImageData(images, labels.astype(np.int64))


def _network(norm: str) -> torch.nn.Module:
    """timm's test_resnet as the recipe's ``model: {use: timm}`` builds it."""
    spec = installed("model", "timm").spec
    factory = spec.factory(spec.config(arch="test_resnet", norm=norm, device="cpu"))
    return seeded_model(factory, 0, 1, 2, (16, 16))


def _train(mechanism: OpacusMechanism, seed: int = 0, epochs: int = 2, sigma: float | None = None,
           batch_size: int = 12, data: ImageData | None = None, optimizer: str = "adamw"
           ) -> tuple[torch.Tensor, object]:
    """Train test_resnet (GroupNorm) privately on ``data``; ``epochs=0``: the initial
    weights. Returns the flat weights and the plan (its ``steps`` counted)."""
    from synthlearn.api import PrivateTraining

    data = data if data is not None else _data()
    model = _network(norm="group")
    n = len(data)
    steps = max(1, epochs * math.ceil(n / batch_size))
    if sigma is None:
        plan = plan_private_training(mechanism, "opacus", n, batch_size, steps)
    else:
        plan = PrivateTraining(mechanism, "opacus", sigma, batch_size / n, steps)
    if epochs == 0:
        return torch.cat([p.detach().flatten() for p in model.parameters()]), plan
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=0.01, device="cpu",
                             optimizer=optimizer, weight_decay=0.0, schedule="constant")
    train_classifier(model, data, settings, seed, private=plan, progress=False)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), plan


def test_private_training_is_deterministic_counts_its_steps_and_reports_them() -> None:
    mechanism = _mechanism(target_epsilon=8.0)
    a, plan = _train(mechanism)
    b, _ = _train(mechanism)
    c, _ = _train(mechanism, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert plan.steps == plan.planned_steps == 8
    record = plan.record()
    assert record["epsilon"] == pytest.approx(plan.epsilon(8)) and record["epsilon"] <= 8.0
    assert record["final_max_grad_norm"] == 1.0 and record["steps"] == 8
    json.dumps(record)  # what a site sends is JSON


def test_clipping_bounds_each_step_and_the_noise_is_added() -> None:
    init, _ = _train(_mechanism(), sigma=0.0, epochs=0)

    def moved(max_grad_norm: float, sigma: float) -> float:
        mechanism = _mechanism(target_epsilon=None, noise_multiplier=1.0,
                               max_grad_norm=max_grad_norm)
        weights, _ = _train(mechanism, sigma=sigma, epochs=1, optimizer="sgd")
        return float((weights - init).abs().max())

    # plain SGD (momentum 0.9, no weight decay), lr 0.01, 4 steps: a step moves a weight
    # by at most lr * the clipped mean gradient's norm, times the momentum's sum
    assert moved(1e-6, 0.0) < 0.01 * 1e-6 * 4 * 10
    assert moved(10.0, 0.0) > 1e-3  # the same steps with a loose bound move the weights
    # noise of std sigma * bound / batch = 5 * 10 / 12 per coordinate dwarfs the signal
    assert moved(10.0, 5.0) > 10 * moved(10.0, 0.0)


def test_empty_poisson_batches_still_take_a_noise_step() -> None:
    for clipping in ("flat", "adaptive"):
        mechanism = _mechanism(target_epsilon=None, noise_multiplier=1.0, clipping=clipping,
                               unclipped_num_std=5.0)
        weights, plan = _train(mechanism, sigma=1.0, batch_size=1, epochs=3,
                               data=_data(n=6))  # q = 1/6: about 1 step in 3 is empty
        assert plan.steps == 18
        assert torch.isfinite(weights).all()


def test_a_batchnorm_model_is_named_as_unsupported() -> None:
    model = _network(norm="batch")
    problems = _mechanism().unsupported(model, (1, 16, 16))
    assert problems and "BatchNorm" in problems[0]
    grouped = _network(norm="group")
    assert _mechanism(clipping="adaptive").unsupported(grouped, (1, 16, 16)) == []


# --------------------------------------------------------------------------- recipes


def test_the_plugin_registers_opacus_from_its_distribution() -> None:
    found = installed("dp_mechanism", "opacus")
    assert found.distribution == "synthlearn-dp"


def test_dp_arms_report_their_epsilon_and_arms_without_dp_report_none(tmp_path: Path) -> None:
    dp = {"use": "opacus", "params": {"target_epsilon": 4.0, "clipping": "adaptive"}}
    model = json.loads(json.dumps(MODEL))
    model["params"]["epochs"] = 1
    recipe = small_recipe(model=model, arms=[
        {"use": "centralized"}, {"use": "local"},
        {"name": "local-dp", "use": "local", "dp": dp},
        {"name": "fedavg-dp", "use": "fedavg", "params": {"rounds": 2}, "dp": dp},
    ])
    metrics = run_recipe(recipe, tmp_path=tmp_path)
    arms = {a["name"]: a for a in metrics["arms"]}
    assert arms["centralized"]["privacy"]["mechanism"] == "not private"
    assert arms["local"]["privacy"] == {"epsilon": None, "delta": None, "accountant": None,
                                        "mechanism": "none"}
    # 60 images a site, batch 16: 4 steps an epoch; local 1 epoch, fedavg 2 rounds of 1
    for name, steps in (("local-dp", 1 * 4), ("fedavg-dp", 2 * 1 * 4)):
        privacy = arms[name]["privacy"]
        assert privacy["mechanism"] == "opacus" and privacy["accountant"] == "rdp"
        assert 3.9 <= privacy["epsilon"] <= 4.0
        assert [s["steps"] for s in privacy["sites"]] == [steps] * 3
        assert all(s["planned_steps"] == steps for s in privacy["sites"])
        assert privacy["about"]["clipping"] == "adaptive"
    report = (metrics.run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Differential privacy" in report and "| ε |" in report.replace(" ε ", " ε ")
    assert (metrics.run_dir / "privacy.png").stat().st_size > 5000


@pytest.mark.parametrize(("change", "expected"), [
    ({"arm_params": {"mu": 0.1}}, "FedProx's proximal term (mu > 0) is not clipped"),
    ({"model": {"mixup": 0.2}}, "cannot take mixup"),
    ({"model": {"calibrate": True}}, "cannot take calibrate"),
    ({"model": {"norm": "batch"}}, "cannot train $.model privately"),
    ({"dp": {"delta": 0.05}}, "site 0: delta 0.05 must be below 1/n"),
    ({"model": {"batch_size": 64}}, "site 0: DP samples each batch"),
    ({"dp": {"noise_multiplier": 1.0}}, "give exactly one of 'target_epsilon'"),
    ({"dp": {"clipping": "adaptive", "target_epsilon": 0.3}},
     "adaptive clipping needs the noise multiplier"),
])
def test_settings_dp_cannot_take_are_refused_before_any_work(
        tmp_path: Path, write_recipe, cli, change: dict, expected: str) -> None:
    model = json.loads(json.dumps(MODEL))
    model["params"].update(change.get("model", {}))
    arm = {"use": "fedavg", "params": {"rounds": 2, **change.get("arm_params", {})},
           "dp": {"use": "opacus", "params": {"target_epsilon": 3.0, **change.get("dp", {})}}}
    recipe = small_recipe(model=model, arms=[arm])
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2, result.stdout
    assert "$.arms[0].dp" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_the_server_checks_each_site_record_against_its_own_plan() -> None:
    from synthlearn.api import PrivacyLedger
    from synthlearn.testing import make_arm_context

    ctx = make_arm_context({"use": "fedavg", "params": {"rounds": 2},
                            "dp": {"use": "opacus", "params": {"target_epsilon": 3.0}}},
                           recipe=small_recipe(model=MODEL))
    ledger = PrivacyLedger.for_arm(ctx)
    assert ledger is not None
    plan = ledger.plans[0]
    assert plan.planned_steps == 2 * 1 * 4  # 2 rounds of one local epoch of 60 images
    record = {"noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate,
              "steps": 4}
    ledger.add(0, record, "site 0, round 0")
    with pytest.raises(SynthlearnError, match="trained with noise_multiplier 0.1, the server"):
        ledger.add(0, {**record, "noise_multiplier": 0.1}, "site 0, round 1")
    with pytest.raises(SynthlearnError, match="taken 12 DP steps, more than the 8"):
        ledger.add(0, {**record, "steps": 8}, "site 0, round 1")
    with pytest.raises(SynthlearnError, match="sent no privacy record"):
        ledger.add(1, None, "site 1, round 0")
    with pytest.raises(SynthlearnError, match="'steps' must be a count"):
        ledger.add(1, {**record, "steps": -1}, "site 1, round 0")
    ledger.add(0, record, "site 0, round 1")
    summary = ledger.summary()
    assert summary["sites"][0]["steps"] == 8 and summary["sites"][1]["steps"] == 0
    assert summary["epsilon"] == pytest.approx(summary["sites"][0]["epsilon"])
    assert 2.95 <= summary["epsilon"] <= 3.0


# --------------------------------------------------------------------------- generators


def _gan(**params: object) -> object:
    spec = installed("generator", "gan").spec
    return spec.factory(spec.config(**{"steps": 6, "width": 8, "batch_size": 8,
                                       "min_images": 10, **params}))


def test_the_gan_fits_under_dp_deterministically_and_counts_its_discriminator_steps() -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    from synthlearn.api import PrivateTraining
    from synthlearn.testing import class_conditions

    data = _data(n=40)
    conditions = class_conditions(data.labels)

    def fit(private: bool, seed: int = 0) -> tuple[np.ndarray, object]:
        gan = _gan(d_steps=2)
        plan = None
        if private:
            batch, steps = gan.dp_steps(len(data))
            assert (batch, steps) == (8, 6 * 2)
            plan = PrivateTraining(_mechanism(), "opacus", 1.0, batch / len(data), steps)
        gan.fit(data, conditions, 2, seed, progress=False,
                **({"private": plan} if plan else {}))
        return gan.sample(class_conditions(np.arange(8) % 2), 0), plan

    a, plan = fit(True)
    b, _ = fit(True)
    c, _ = fit(True, seed=1)
    plain, _ = fit(False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, plain)
    assert plan.steps == plan.planned_steps == 12


def test_a_synthetic_arm_under_dp_reports_epsilon_and_its_generators_carry_it(
        tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    from synthlearn.api import Payload

    gan = {"use": "gan", "params": {"steps": 8, "width": 8, "batch_size": 8}}
    recipe = small_recipe(model=MODEL, arms=[
        {"name": "synthetic-dp", "use": "synthetic", "params": {"share": "generator"},
         "generator": gan, "dp": {"use": "opacus", "params": {"target_epsilon": 5.0}}}])
    metrics = run_recipe(recipe, tmp_path=tmp_path)
    privacy = metrics["arms"][0]["privacy"]
    assert 4.9 <= privacy["epsilon"] <= 5.0
    assert [s["steps"] for s in privacy["sites"]] == [8] * 3  # 8 steps x 1 d_step
    assert "class counts" in privacy["outside_budget"][0]
    blob = (metrics.run_dir / "artifacts" / "synthetic-dp" /
            "site-0-generator.safetensors").read_bytes()
    carried = Payload.from_bytes(blob, "artifact").meta["generator"]["privacy"]
    assert carried["epsilon"] == pytest.approx(privacy["sites"][0]["epsilon"])


@pytest.mark.parametrize(("arm", "expected"), [
    ({"params": {"share": "samples", "drop_near_copies": 0.01}},
     "drop_near_copies compares the released images"),
    ({"generator": {"use": "diffusion"}}, "generator 'diffusion' (synthlearn-diffusion) "
                                          "cannot fit under DP"),
])
def test_a_synthetic_arm_refuses_what_dp_cannot_take(tmp_path: Path, write_recipe, cli,
                                                     arm: dict, expected: str) -> None:
    if "generator" in arm:
        pytest.importorskip("synthlearn_diffusion", reason="synthlearn-diffusion not installed")
    entry = {"use": "synthetic", "dp": {"use": "opacus"}, **arm}
    result = cli("validate", str(write_recipe(small_recipe(model=MODEL, arms=[entry]))))
    assert result.returncode == 2, result.stdout
    assert "$.arms[0].dp" in result.stderr and expected in result.stderr
