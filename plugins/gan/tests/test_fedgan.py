"""The ``fedgan`` arm (FedGAN): one gan trained by federated averaging of both networks,
scored per round by its generator's fidelity; and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("synthlearn_gan")

from synthlearn.api import Payload  # noqa: E402
from synthlearn.testing import check_arm, run_recipe, small_recipe  # noqa: E402
from synthlearn_gan import GanConfig, GanGenerator  # noqa: E402
from synthlearn_gan.federated import ema_decay, round_steps  # noqa: E402

GAN = {"use": "gan", "params": {"steps": 9, "width": 8, "batch_size": 8}}
ROUNDS = 3


@pytest.fixture(scope="module")
def fedgan_run(tmp_path_factory: pytest.TempPathFactory):
    recipe = small_recipe(arms=[{"name": "fedgan", "use": "fedgan", "generator": GAN,
                                 "params": {"rounds": ROUNDS, "fidelity_images": 60}}])
    return run_recipe(recipe, tmp_path=tmp_path_factory.mktemp("fedgan"))


def test_round_steps_split_the_gan_steps_evenly() -> None:
    assert round_steps(10, 3) == [4, 3, 3]
    assert round_steps(9, 3) == [3, 3, 3] and sum(round_steps(6000, 7)) == 6000


def test_the_server_ema_weighs_rounds_as_the_fit_weighs_steps() -> None:
    cfg = GanConfig(ema=0.999)
    t = np.arange(0, 30, dtype=np.float64)
    per_step = np.minimum(0.999, (1 + t) / (10 + t))
    assert ema_decay(cfg, 0, 30) == pytest.approx(np.prod(per_step))
    # compounding two rounds is the same as one round of their steps
    assert ema_decay(cfg, 0, 10) * ema_decay(cfg, 10, 20) == pytest.approx(
        ema_decay(cfg, 0, 30))
    assert ema_decay(cfg, 10_000, 100) == pytest.approx(0.999 ** 100)


def test_every_round_crosses_both_ways_and_scores_the_generator(fedgan_run) -> None:
    arm = fedgan_run["arms"][0]
    rounds = [p for p in arm["curve"] if p["round"] is not None]
    assert [p["round"] for p in rounds] == list(range(ROUNDS))
    assert [p["steps"] for p in rounds] == [3, 6, 9]
    for point in rounds:
        assert {"fd", "precision", "recall", "realism"} <= set(point)
        assert point["fd"] > 0 and 0 <= point["realism"] <= 1
    # the same two networks cross each way every round (after a first round that also
    # brought each site's statistics)
    to_sites = np.diff([0] + [p["bytes_to_sites"] for p in rounds])
    to_server = np.diff([p["bytes_to_server"] for p in rounds])
    assert len(set(to_sites)) == 1 and len(set(to_server)) == 1
    assert abs(int(to_sites[0]) - int(to_server[0])) < 0.01 * to_sites[0]
    final = arm["curve"][-1]  # the released model, scored, at the last round's bytes
    assert final["round"] is None and "accuracy" in final
    assert final["bytes_to_sites"] == rounds[-1]["bytes_to_sites"]
    assert arm["details"]["steps_per_round"] == [3, 3, 3]


def test_the_global_generator_follows_every_site_and_loads(fedgan_run) -> None:
    arm = fedgan_run["arms"][0]
    sites = fedgan_run["sites"]
    for site, drawn in zip(sites, arm["details"]["per_site"], strict=True):
        assert drawn["n_synthetic"] == site["n"]  # multiple 1.0
        assert drawn["class_counts_synthetic"] == site["class_counts"]
    assert [s["site"] for s in arm["memorisation"]["sites"]] == [0, 1, 2]
    assert "realism" in arm["fidelity"]["pooled"]
    blob = (fedgan_run.run_dir / "artifacts" / "fedgan" / "global-generator.safetensors"
            ).read_bytes()
    generator = GanGenerator(GanConfig(**GAN["params"]))
    generator.load(Payload.from_bytes(blob, "artifact"), "artifact")
    report = (fedgan_run.run_dir / "report.md").read_text()
    assert "### fedgan: every round" in report and "| round | fd |" in report


def test_fedgan_keeps_the_arm_contract() -> None:
    check_arm({"use": "fedgan", "params": {"rounds": 2, "fidelity_images": 20},
               "generator": {"use": "gan", "params": {"steps": 4, "width": 8,
                                                       "batch_size": 8}}})


@pytest.mark.parametrize(("entry", "expected"), [
    ({"params": {"rounds": 20}, "generator": GAN},
     "the gan's 9 steps cannot be split over 20 rounds"),
    ({"params": {"rounds": 0}}, "'rounds' must be an integer >= 1"),
    ({"params": {"count": 10, "multiple": 2.0}}, "set either 'multiple' or 'count'"),
])
def test_impossible_fedgan_recipes_are_one_line_errors(write_recipe, cli, entry: dict,
                                                       expected: str) -> None:
    result = cli("validate", str(write_recipe(small_recipe(arms=[{"use": "fedgan",
                                                                   **entry}]))))
    assert result.returncode == 2, result.stdout
    assert "$.arms[0]" in result.stderr and expected in result.stderr, result.stderr


def test_fedgan_refuses_a_generator_it_cannot_average(write_recipe, cli,
                                                      tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_diffusion", reason="synthlearn-diffusion not installed")
    result = cli("validate", str(write_recipe(small_recipe(arms=[
        {"use": "fedgan", "generator": {"use": "diffusion"}}]))))
    assert result.returncode == 2
    assert ("fedgan averages the gan generator's networks; generator 'diffusion' "
            "(synthlearn-diffusion) cannot be averaged") in result.stderr
