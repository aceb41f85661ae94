"""The fedavg plugin: averaging, site sampling, FedProx, rounds recorded with their bytes,
determinism, and a site that fails (or sends garbage) mid-round."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("synthlearn_fedavg", reason="the synthlearn-fedavg plugin is not installed")

from synthlearn import SynthlearnError, hookimpl  # noqa: E402
from synthlearn.api import (  # noqa: E402
    ImageData,
    Payload,
    Site,
    SiteEnv,
    average,
    check_update,
    choose_sites,
    seeded_model,
)
from synthlearn.testing import (  # noqa: E402
    check_arm,
    make_arm_context,
    run_recipe,
    small_recipe,
    tiny_dataset,
)
from synthlearn_fedavg.arm import round_lr  # noqa: E402
from synthlearn_fedavg.site_round import RoundConfig, proximal_term, train_round  # noqa: E402

# --------------------------------------------------------------------------- server side


def test_average_weights_sites_by_examples_and_applies_the_server_lr() -> None:
    g = {"w": torch.zeros(2), "steps": torch.tensor(5)}
    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor(7)}
    b = {"w": torch.tensor([4.0, 8.0]), "steps": torch.tensor(6)}
    out = average(g, [(a, 1.0), (b, 2.0)])
    assert torch.allclose(out["w"], torch.tensor([3.0, 6.0]))  # (1*a + 2*b) / 3
    assert out["w"].dtype == torch.float32
    assert out["steps"].item() == 7  # integer buffers: the largest value sent
    half = average(g, [(a, 1.0), (b, 2.0)], server_lr=0.5)
    assert torch.allclose(half["w"], torch.tensor([1.5, 3.0]))
    assert torch.allclose(average(g, [(a, 1.0), (b, 1.0)])["w"], torch.tensor([2.5, 5.0]))
    # a server step past the mean applies to parameters, never to running statistics
    g2 = {"w": torch.zeros(2), "var": torch.ones(2)}
    a2 = {"w": torch.ones(2), "var": torch.full((2,), 0.2)}
    out = average(g2, [(a2, 1.0)], server_lr=3.0, parameters={"w"})
    assert torch.allclose(out["w"], torch.full((2,), 3.0))
    assert torch.allclose(out["var"], torch.full((2,), 0.2))


def test_check_update_names_the_source() -> None:
    ref = {"w": torch.zeros(3), "b": torch.zeros(1)}
    check_update({"w": torch.ones(3), "b": torch.ones(1)}, ref, "site 1")
    with pytest.raises(SynthlearnError, match=r"^site 2: .*missing b"):
        check_update({"w": torch.ones(3)}, ref, "site 2")
    with pytest.raises(SynthlearnError, match=r"^site 0: .*'w' is torch.float32 \(4,\)"):
        check_update({"w": torch.ones(4), "b": torch.ones(1)}, ref, "site 0")
    with pytest.raises(SynthlearnError, match="NaN or infinite"):
        check_update({"w": torch.tensor([0.0, math.nan, 0.0]), "b": torch.ones(1)}, ref, "s")


def test_choose_sites_draws_the_fraction_reproducibly() -> None:
    ids = [0, 1, 2, 3, 4]
    assert choose_sites(ids, 1.0, 7) == ids
    picked = choose_sites(ids, 0.4, 7)
    assert len(picked) == 2 and picked == sorted(picked) and set(picked) <= set(ids)
    assert picked == choose_sites(ids, 0.4, 7)
    assert len(choose_sites(ids, 0.01, 7)) == 1  # never fewer than one site
    draws = {tuple(choose_sites(ids, 0.4, seed)) for seed in range(20)}
    assert len(draws) > 3


def test_round_lr_decays_like_a_cosine_schedule_over_rounds() -> None:
    assert round_lr(0.1, 0, 4, "cosine") == pytest.approx(0.1)
    assert round_lr(0.1, 2, 4, "cosine") == pytest.approx(0.05)
    assert 0 < round_lr(0.1, 3, 4, "cosine") < 0.05
    assert round_lr(0.1, 3, 4, "constant") == 0.1


# --------------------------------------------------------------------------- site side


def test_proximal_term_is_half_mu_squared_distance() -> None:
    net = torch.nn.Linear(2, 1, bias=False)
    anchor = {"weight": torch.zeros(1, 2)}
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 4.0]]))
    penalty = proximal_term(0.2, anchor)(net)
    assert penalty.item() == pytest.approx(0.5 * 0.2 * 25.0)
    penalty.backward()
    assert torch.allclose(net.weight.grad, 0.2 * net.weight.detach())  # pulls to the anchor


def _site_env() -> SiteEnv:
    model = make_arm_context("fedavg").model_component  # small_recipe's timm test_resnet
    return SiteEnv(seed=0, model_component=model, num_classes=2, in_chans=1, image_size=(16, 16),
                   progress=False)


def test_fedprox_keeps_a_site_closer_to_the_global_model() -> None:
    env = _site_env()
    dataset = tiny_dataset(n_train=180, n_test=90)  # small_recipe's data
    site = Site(0, dataset.train.subset(list(range(64))))
    _, model = env.new_model()
    anchor = Payload(dict(model.state_dict()), {})

    def drift(mu: float) -> float:
        out = train_round(site, RoundConfig(round=0, local_epochs=3, lr=0.01, mu=mu),
                          anchor, env)
        return sum((out.tensors[k] - anchor.tensors[k]).square().sum().item()
                   for k, _ in model.named_parameters())

    free, held = drift(0.0), drift(10.0)
    assert free > 0
    assert held < 0.5 * free


def test_round_needs_the_global_model() -> None:
    env = _site_env()
    data = ImageData(np.zeros((4, 1, 16, 16), np.uint8), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="global model"):
        train_round(Site(0, data), RoundConfig(0, 1, 0.01, 0.0), None, env)


# --------------------------------------------------------------------------- whole runs


def digits_recipe(tmp_path: Path, arms: list[dict]) -> dict:
    """8x8 digits over 3 sites and timm's smallest ResNet: a federated run in seconds."""
    recipe = small_recipe(
        name="fed",
        data={"use": "digits", "params": {"size": 8}},
        model={"use": "timm", "params": {"arch": "test_resnet", "epochs": 2,
                                         "batch_size": 32, "lr": 0.002, "device": "cpu"}},
        arms=arms,
    )
    recipe["output"] = {"dir": str(tmp_path / "runs"), "cache": None}
    return recipe


FEDAVG = {"use": "fedavg", "params": {"rounds": 3, "local_epochs": 1, "eval_every": 2}}
FEDPROX = {"name": "fedprox", "use": "fedavg",
           "params": {"rounds": 2, "local_epochs": 1, "mu": 0.01, "fraction": 0.67}}


class RoundListener:
    """A tracker plugin: keeps every ``synthlearn_on_round_end`` call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict]] = []

    @hookimpl
    def synthlearn_on_round_end(self, arm: str, round: int, metrics: dict) -> None:
        # a read-only copy (tuples for lists): kept as metrics.json would hold it
        self.calls.append((arm, round, json.loads(json.dumps(metrics))))


LISTENER = RoundListener()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    """The digits recipe with centralized, fedavg and fedprox arms (a round listener
    registered), and again with the fedavg arm alone (same seed, no cache)."""
    tmp = tmp_path_factory.mktemp("fedavg")
    first = run_recipe(digits_recipe(tmp, [{"use": "centralized"}, FEDAVG, FEDPROX]),
                       plugins=[LISTENER], tmp_path=tmp)
    second = run_recipe(digits_recipe(tmp, [FEDAVG]), tmp_path=tmp)
    return first, second, first.run_dir


def test_round_end_hook_sees_every_recorded_round(two_runs) -> None:
    metrics, _, _ = two_runs
    _, fedavg, fedprox = metrics["arms"]
    assert [(arm, r) for arm, r, _ in LISTENER.calls] == [
        ("fedavg", 1), ("fedavg", 2), ("fedprox", 0), ("fedprox", 1)]
    assert [m for arm, _, m in LISTENER.calls if arm == "fedavg"] == fedavg["curve"]
    assert [m for arm, _, m in LISTENER.calls if arm == "fedprox"] == fedprox["curve"]


def test_fedavg_learns_and_records_every_evaluated_round(two_runs) -> None:
    metrics, _, run_dir = two_runs
    central, fedavg, fedprox = metrics["arms"]
    assert (fedavg["name"], fedavg["use"], fedavg["private"]) == ("fedavg", "fedavg", True)
    # 10-class digits: chance is 0.1; three rounds of one local epoch come close to
    # two centralized epochs
    assert fedavg["metrics"]["accuracy"] > 0.8
    assert central["metrics"]["accuracy"] - fedavg["metrics"]["accuracy"] < 0.1
    # eval_every 2 over 3 rounds: after round 1 and after the last round (2)
    assert [p["round"] for p in fedavg["curve"]] == [1, 2]
    assert fedavg["curve"][-1]["accuracy"] == fedavg["metrics"]["accuracy"]
    assert fedavg["curve"][-1]["bytes_to_server"] == fedavg["metrics"]["bytes_to_server"]
    assert fedavg["curve"][0]["bytes_to_server"] < fedavg["curve"][1]["bytes_to_server"]
    assert fedavg["curve"][0]["sites"] == [0, 1, 2]
    # one-shot arms are a single point at their final accuracy and bytes
    assert central["curve"] == [{"round": None, **{k: central["metrics"][k] for k in (
        "accuracy", "balanced_accuracy", "auc", "bytes_to_server", "bytes_to_sites")}}]
    assert fedavg["details"]["participants"] == [[0, 1, 2]] * 3
    report = (run_dir / "report.md").read_text()
    assert "### fedavg: every round" in report and "![cost](cost.png)" in report
    assert (run_dir / "cost.png").stat().st_size > 5000


def test_fedavg_counts_the_model_both_ways_every_round(two_runs) -> None:
    metrics, _, _ = two_runs
    _, fedavg, fedprox = metrics["arms"]
    ctx = make_arm_context(FEDAVG, recipe=digits_recipe(Path("."), [FEDAVG]))
    model = seeded_model(ctx.model_component.build(), 0, 1, 10, (8, 8))
    trip = len(Payload(dict(model.state_dict()), {"round": 0}).to_bytes())
    # the global model goes to each of 3 sites in each of 3 rounds; a trained model of
    # the same architecture comes back (its meta adds a few bytes)
    assert fedavg["metrics"]["bytes_to_sites"] == 9 * trip
    assert 9 * trip < fedavg["metrics"]["bytes_to_server"] < 9 * trip + 9 * 100
    for site in fedavg["site_bytes"]:
        assert site["bytes_to_sites"] == 3 * trip
    # FedProx with fraction 0.67 of 3 sites: 2 sites per round, 4 model trips each way
    assert [len(p) for p in fedprox["details"]["participants"]] == [2, 2]
    assert fedprox["metrics"]["bytes_to_sites"] == 4 * trip
    assert fedprox["details"]["mu"] == 0.01
    assert "model weights after local training, every round (FedProx)" in fedprox["shared"]


def test_fedavg_same_seed_same_numbers(two_runs) -> None:
    first, second, _ = two_runs
    a, b = first["arms"][1], second["arms"][0]
    assert a["curve"] == b["curve"]
    assert a["details"] == b["details"]
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]


def test_site_steps_pool_statistics_then_fit_biases_at_the_sites(two_runs, tmp_path) -> None:
    plain = two_runs[0]["arms"][1]
    arm = {"name": "fedavg-steps", "use": "fedavg", "params": FEDAVG["params"]}
    data = digits_recipe(tmp_path, [arm])
    data["model"]["params"].update(adapt_bn=True, calibrate=True)
    result = run_recipe(data, tmp_path=tmp_path)
    run_dir = result.run_dir
    adapted = result["arms"][0]
    trained, after_bn, after_cal = adapted["details"]["steps"]
    # same seeds (they follow the method, not the name): the rounds are the plain arm's
    assert [s["step"] for s in (trained, after_bn, after_cal)] == [
        "trained", "adapt_bn", "calibrate"]
    assert trained["accuracy"] == plain["metrics"]["accuracy"]
    assert after_cal["accuracy"] == adapted["metrics"]["accuracy"]
    assert after_bn["accuracy"] != after_cal["accuracy"] or after_bn["auc"] != after_cal["auc"]
    # the rounds' points are before the steps; the released model's point ends the curve
    assert adapted["curve"][:-1] == plain["curve"]
    released = adapted["curve"][-1]
    assert released["round"] is None and released["accuracy"] == after_cal["accuracy"]
    assert released["bytes_to_sites"] == adapted["metrics"]["bytes_to_sites"]
    assert adapted["details"]["adapted_batchnorm_layers"] > 0
    biases = adapted["details"]["calibration_biases"]
    assert len(biases) == 10 and abs(sum(biases)) < 1e-9 and max(map(abs, biases)) > 1e-4
    # the model goes to each site twice more; only statistics, biases and counts come back
    model_bytes = plain["metrics"]["bytes_to_sites"] // 9  # a round's model, with its meta
    extra = adapted["metrics"]["bytes_to_sites"] - plain["metrics"]["bytes_to_sites"]
    assert 6 * (model_bytes - 100) < extra < 6 * model_bytes
    back = adapted["metrics"]["bytes_to_server"] - plain["metrics"]["bytes_to_server"]
    assert 0 < back < model_bytes
    assert any("batch-norm means and variances" in s for s in adapted["shared"])
    assert any("per-class logit biases" in s for s in adapted["shared"])
    report = (run_dir / "report.md").read_text()
    assert "biases calibrated at the sites (`calibrate`)" in report


# --------------------------------------------------------------------------- failures

FLAKY_RUNNER = """
import attrs
import torch
from synthlearn import ComponentSpec, SiteTaskError, hookimpl
from synthlearn.api import Payload

class LocalRunner:
    '''Site work in this process, every site's result at the end (a runner may return a
    dict instead of yielding each site's result as it finishes).'''
    def execute(self, task, sites, envs, inbound):
        out = {}
        for site in sites:
            received = inbound.get(site.id)
            payload = None if received is None else Payload.from_bytes(received, "server")
            out[site.id] = task.fn(site, task.config, payload, envs[site.id]).to_bytes()
        return out

@attrs.define(frozen=True)
class Cfg:
    site: int = 1
    round: int = 1
    mode: str = "crash"

class Flaky:
    '''Runs site work in-process, but one site breaks in one round.'''
    def __init__(self, config):
        self.config = config
        self.inner = LocalRunner()
    def execute(self, task, sites, envs, inbound):
        out = self.inner.execute(task, sites, envs, inbound)
        c = self.config
        for site in sites:
            if site.id == c.site and task.round == c.round:
                if c.mode == "crash":  # SiteTaskError says which site failed
                    raise SiteTaskError(site.id, ConnectionError("connection reset by peer"))
                sent = Payload.from_bytes(out[site.id], "site")
                bad = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                       for k, v in sent.tensors.items()}
                out[site.id] = Payload(bad, sent.meta).to_bytes()
        return out

@hookimpl
def synthlearn_register_runners():
    return [ComponentSpec("flaky", Cfg, Flaky, "one site breaks in one round")]
"""


def _flaky_run(tmp_path: Path, write_recipe, cli, mode: str) -> tuple[int, str]:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "acme_flaky.py").write_text(FLAKY_RUNNER)
    recipe = small_recipe(arms=[{"use": "fedavg", "params": {"rounds": 3}}],
                          runner={"use": "flaky", "params": {"site": 1, "round": 1,
                                                             "mode": mode}})
    recipe["model"]["params"]["epochs"] = 1
    result = cli("run", str(write_recipe(recipe)), "--quiet",
                     env={"PYTHONPATH": str(tmp_path / "mods"),
                          "SYNTHLEARN_PLUGINS": "acme_flaky"})
    runs = tmp_path / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []  # nothing half-written
    return result.returncode, result.stderr.strip()


def test_a_site_failing_mid_round_stops_the_run(tmp_path: Path, write_recipe, cli) -> None:
    code, err = _flaky_run(tmp_path, write_recipe, cli, "crash")
    assert code == 2
    assert err == ("error: arm fedavg, site 1, round 1: site failed: ConnectionError: "
                   "connection reset by peer")


def test_a_site_sending_garbage_stops_the_run(tmp_path: Path, write_recipe, cli) -> None:
    code, err = _flaky_run(tmp_path, write_recipe, cli, "nan")
    assert code == 2
    *warnings, last = err.splitlines()
    # the NaN update is refused by the cache (never stored) and then by the server
    assert all(w.startswith("warning: ") for w in warnings)
    assert last.startswith("error: arm fedavg, site 1, round 1: model update tensor ")
    assert last.endswith("holds NaN or infinite values")


def test_bad_fedavg_params_name_the_yaml_path(tmp_path: Path, write_recipe, cli) -> None:
    recipe = small_recipe(arms=[{"use": "fedavg", "params": {"rounds": 0, "fraction": 1.5}}])
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2
    assert "$.arms[0].params" in result.stderr and "rounds" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- conformance


def test_fedavg_and_fedprox_conform_to_the_arm_contract() -> None:
    check_arm({"use": "fedavg", "params": {"rounds": 2}})
    check_arm({"use": "fedavg", "params": {"rounds": 2, "mu": 0.01, "fraction": 0.67}})
