"""DP in recipes: ε in metrics.json and the report, the server's checks of each site's
record, and every setting refused before any work (one line at the arm's dp slot)."""

from __future__ import annotations

import pytest

pytest.importorskip("opacus", reason="opacus (a dependency of synthlearn-dp) is not installed")
pytest.importorskip("synthlearn_dp", reason="the synthlearn-dp plugin is not installed")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from dp_helpers import MODEL  # noqa: E402
from synthlearn.api import SynthlearnError  # noqa: E402
from synthlearn.testing import installed, run_recipe, small_recipe  # noqa: E402


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
    plan = ledger.plans[0][None]
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


def test_fedgan_under_dp_plans_every_round_at_once_and_reports_epsilon(
        tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    gan = {"use": "gan", "params": {"steps": 9, "width": 8, "batch_size": 8}}
    dp = {"use": "opacus", "params": {"target_epsilon": 5.0}}
    from synthlearn.api import plan_private_training
    from synthlearn_dp.config import OpacusConfig
    from synthlearn_dp.mechanism import OpacusMechanism

    arms = [{"name": "fedgan-dp", "use": "fedgan", "generator": gan, "dp": dp,
             "params": {"rounds": 3, "fidelity_images": 40}}]
    metrics = run_recipe(small_recipe(model=MODEL, arms=arms), tmp_path=tmp_path)
    fedgan = metrics["arms"][0]
    privacy = fedgan["privacy"]
    # one noise level for all 3 rounds: the 9 discriminator steps of the whole run,
    # planned and spent; the same plan (and ε) as a one-shot fit of the same gan (batch
    # 8 of a 60-image site, 9 steps)
    assert 4.9 <= privacy["epsilon"] <= 5.0
    assert [s["steps"] for s in privacy["sites"]] == [9] * 3
    assert [s["planned_steps"] for s in privacy["sites"]] == [9] * 3
    one_shot = plan_private_training(OpacusMechanism(OpacusConfig(target_epsilon=5.0)),
                                     "opacus", 60, 8, 9)
    assert privacy["sites"][0]["noise_multiplier"] == pytest.approx(one_shot.noise_multiplier)
    assert "class counts" in privacy["outside_budget"][0]
    assert [p["round"] for p in fedgan["curve"] if p["round"] is not None] == [0, 1, 2]


def test_kr_under_dp_composes_its_teacher_and_generator_in_one_budget(tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    pytest.importorskip("synthlearn_kr", reason="the synthlearn-kr plugin is not installed")
    from synthlearn.api import Payload

    gan = {"use": "gan", "params": {"steps": 6, "width": 8, "batch_size": 8}}
    dp = {"use": "opacus", "params": {"target_epsilon": 4.0}}
    arms = [{"name": f"kr-{share}", "use": "kr", "generator": gan, "dp": dp,
             "params": {"regenerate_every": None, "share": share, "labels": "ensemble"}}
            for share in ("models", "samples")]
    metrics = run_recipe(small_recipe(model=MODEL, arms=arms), tmp_path=tmp_path)
    models, samples = metrics["arms"]
    privacy = models["privacy"]
    assert 3.9 <= privacy["epsilon"] <= 4.0  # the two phases together, not each
    for site in privacy["sites"]:
        phases = {p["phase"]: p for p in site["phases"]}
        # teacher: 2 epochs of 60 images in batches of 16; generator: 6 steps x 1 d_step
        assert (phases["teacher"]["steps"], phases["generator"]["steps"]) == (8, 6)
        assert phases["teacher"]["sample_rate"] == pytest.approx(16 / 60)
        assert site["epsilon"] > max(p["epsilon_alone"] for p in site["phases"])
    assert "class counts" in privacy["outside_budget"][0]
    # both ways of sharing train the same private teachers and generators
    assert samples["privacy"]["sites"] == privacy["sites"]
    for key in ("accuracy", "auc"):
        assert samples["metrics"][key] == models["metrics"][key]
    blob = (metrics.run_dir / "artifacts" / "kr-models" /
            "site-0-generator-and-teacher.safetensors").read_bytes()
    carried = Payload.from_bytes(blob, "artifact").meta["generator"]["privacy"]
    assert carried["phase"] == "generator"
    assert carried["noise_multiplier"] == pytest.approx(privacy["sites"][0]["noise_multiplier"])
    report = (metrics.run_dir / "report.md").read_text(encoding="utf-8")
    assert "| kr-models | 0 (teacher) |" in report and "| kr-models | 0 (generator) |" in report


def test_kr_under_dp_refuses_a_filter_and_checks_its_teacher(write_recipe, cli) -> None:
    pytest.importorskip("synthlearn_kr", reason="the synthlearn-kr plugin is not installed")
    dp = {"use": "opacus"}
    batch_teacher = json.loads(json.dumps(MODEL))
    batch_teacher["params"]["norm"] = "batch"
    for entry, expected in (
            ({"params": {"share": "samples"}, "filter": {"use": "near-copy"}},
             "a filter compares the released images"),
            ({"teacher": batch_teacher}, "cannot train $.arms[0].teacher privately")):
        recipe = small_recipe(model=MODEL, arms=[{"use": "kr", "dp": dp, **entry}])
        result = cli("validate", str(write_recipe(recipe)))
        assert result.returncode == 2, result.stdout
        assert "$.arms[0].dp" in result.stderr and expected in result.stderr, result.stderr


def test_fedgan_refuses_a_dp_budget_its_rounds_cannot_meet(write_recipe, cli) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    entry = {"use": "fedgan", "params": {"rounds": 2},
             "generator": {"use": "gan", "params": {"steps": 4, "batch_size": 64}},
             "dp": {"use": "opacus"}}
    result = cli("validate", str(write_recipe(small_recipe(model=MODEL, arms=[entry]))))
    assert result.returncode == 2, result.stdout
    assert "$.arms[0].dp: site 0: DP samples each batch" in result.stderr, result.stderr


@pytest.mark.parametrize(("arm", "expected"), [
    ({"params": {"share": "samples"}, "filter": {"use": "near-copy"}},
     "a filter compares the released images"),
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


def test_models_that_learn_only_from_released_data_keep_batch_norm_and_mixup(
        write_recipe, cli) -> None:
    """The synthetic arm's, fedgan's and kr's student train on what DP released: batch
    norm and mixup are theirs to keep; calibrate sends site statistics and stays refused.
    A model trained on the site's images (kr's teacher) keeps every refusal."""
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    pytest.importorskip("synthlearn_kr", reason="the synthlearn-kr plugin is not installed")
    plain = json.loads(json.dumps(MODEL))
    plain["params"].update(norm="batch", mixup=0.2)
    gan = {"use": "gan", "params": {"steps": 8, "width": 8, "batch_size": 8}}
    dp = {"use": "opacus", "params": {"target_epsilon": 5.0}}
    arms = [{"name": "synthetic", "use": "synthetic", "generator": gan, "dp": dp},
            {"name": "fedgan", "use": "fedgan", "params": {"rounds": 2}, "generator": gan,
             "dp": dp},
            {"name": "kr", "use": "kr", "generator": gan, "teacher": MODEL, "dp": dp}]
    result = cli("validate", str(write_recipe(small_recipe(model=plain, arms=arms))))
    assert result.returncode == 0, result.stderr
    calibrated = {**plain, "params": {**plain["params"], "calibrate": True}}
    mixed_teacher = {**MODEL, "params": {**MODEL["params"], "mixup": 0.2}}
    for model, arm, expected in (
            (calibrated, arms[0], "$.arms[0].dp: training under DP cannot take calibrate"),
            (MODEL, {**arms[2], "teacher": mixed_teacher},
             "cannot take mixup (a mixed example depends on two records, which breaks the "
             "per-example bound) (set them off in $.arms[0].teacher)"),
            (plain, {k: v for k, v in arms[2].items() if k != "teacher"},
             "cannot take mixup")):  # without a teacher of its own, kr's model is it
        result = cli("validate", str(write_recipe(small_recipe(model=model, arms=[arm]))))
        assert result.returncode == 2, result.stdout
        assert expected in result.stderr, result.stderr


def test_the_server_wants_one_record_per_planned_phase() -> None:
    pytest.importorskip("synthlearn_kr", reason="the synthlearn-kr plugin is not installed")
    from synthlearn.api import PrivacyLedger
    from synthlearn.testing import make_arm_context

    ctx = make_arm_context({"use": "kr", "generator": {"use": "gan", "params": {"steps": 6}},
                            "dp": {"use": "opacus", "params": {"target_epsilon": 4.0}}},
                           recipe=small_recipe(model=MODEL))
    ledger = PrivacyLedger.for_arm(ctx)
    assert ledger is not None and set(ledger.plans[0]) == {"teacher", "generator"}
    records = [{"phase": name, "noise_multiplier": plan.noise_multiplier,
                "sample_rate": plan.sample_rate, "steps": plan.planned_steps}
               for name, plan in ledger.plans[0].items()]
    with pytest.raises(SynthlearnError, match="trains 2 phase.* sent 1 privacy record"):
        ledger.add_phases(0, records[:1], "site 0")
    with pytest.raises(SynthlearnError, match=r"phases \['teacher', 'teacher'\], the server"):
        ledger.add_phases(0, [records[0], records[0]], "site 0")
    with pytest.raises(SynthlearnError, match="sent no privacy record"):
        ledger.add_phases(0, None, "site 0")
    ledger.add_phases(0, records[::-1], "site 0")
    site = ledger.summary()["sites"][0]
    assert site["steps"] == site["planned_steps"] and 3.9 <= site["epsilon"] <= 4.0
