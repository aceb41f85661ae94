"""The mia plugin: the attacks' statistics on signals with a known answer, and a whole
audit in which an over-fitted model leaks and its control does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("synthlearn_mia", reason="the synthlearn-mia plugin is not installed")

from sklearn.metrics import roc_auc_score  # noqa: E402
from synthlearn.testing import check_attack, installed, run_recipe, small_recipe  # noqa: E402
from synthlearn_mia.attacks import (  # noqa: E402
    LiraAttack,
    LossAttack,
    RmiaAttack,
    lira_scores,
    rmia_scores,
)
from synthlearn_mia.config import LiraConfig, LossConfig, RmiaConfig  # noqa: E402
from synthlearn_mia.signals import scaled_logit, true_class_logit_probability  # noqa: E402


def test_scaled_logit_is_the_log_odds_and_never_saturates() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 300.0, 0.0]])
    labels = np.array([0, 1])
    p = true_class_logit_probability(logits, labels)
    assert scaled_logit(logits, labels)[0] == pytest.approx(np.log(p[0] / (1 - p[0])))
    assert scaled_logit(logits, labels)[1] == pytest.approx(300.0 - np.log(2.0))
    assert p[1] == 1.0  # the probability saturates; the scaled logit does not


def known_answer(n: int = 400, models: int = 8, shift: float = 1.0, seed: int = 0):
    """Signals where training on a candidate raises its signal by ``shift``, each
    candidate with its own difficulty; the target trained on the first half."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 3.0, n)
    masks = np.zeros((models, n), bool)
    for k in range(0, models, 2):
        m = rng.permutation(n) < n // 2
        masks[k], masks[k + 1] = m, ~m
    values = difficulty + shift * masks + rng.normal(0.0, 0.5, (models, n))
    member = np.arange(n) < n // 2
    target = difficulty + shift * member + rng.normal(0.0, 0.5, n)
    return target, values, masks, member


def test_lira_calibrates_per_candidate_difficulty() -> None:
    target, values, masks, member = known_answer()
    # the raw signal is swamped by how hard each candidate is; LiRA removes that
    assert roc_auc(target, member) < 0.65
    for online in (True, False):
        for global_variance in (True, False):
            scores = lira_scores(target, values, masks, online=online,
                                 global_variance=global_variance)
            assert roc_auc(scores, member) > 0.8, (online, global_variance)
    # no signal, no leak
    target0, values0, masks0, member0 = known_answer(shift=0.0)
    scores = lira_scores(target0, values0, masks0, online=True, global_variance=True)
    assert abs(roc_auc(scores, member0) - 0.5) < 0.08


def test_rmia_scores_are_ranks_of_the_likelihood_ratio() -> None:
    target, values, masks, member = known_answer()
    p = 1 / (1 + np.exp(-target))
    ref = 1 / (1 + np.exp(-values))
    scores = rmia_scores(p, ref, masks, a=0.3, gamma=1.0)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    # dividing by Pr(x) removes much of each candidate's difficulty
    assert roc_auc(scores, member) > max(0.65, roc_auc(p, member) + 0.05)
    # gamma = 1: the score of x is the share of the other candidates it beats
    ratio = p / (0.5 * (1.3 * np.mean(np.where(~masks, ref, 0), axis=0)
                        * masks.shape[0] / (~masks).sum(axis=0) + 0.7))
    assert scores[np.argmax(ratio)] == 1.0 and scores[np.argmin(ratio)] == 0.0


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """An over-fitted centralized model (few images, many epochs) audited by all three
    attacks with 2 plain reference models. Measured (one thread): AUC loss 0.76, LiRA
    0.83, RMIA 0.73, controls 0.49 to 0.51; TPR at 1% FPR of LiRA 0.18."""
    tmp = tmp_path_factory.mktemp("mia")
    recipe = small_recipe(
        name="audit",
        data={"use": "phantom", "params": {"n_train": 240, "n_test": 240, "size": 16}},
        sites={"count": 2, "partition": {"use": "iid"}},
        model={"use": "timm", "params": {"arch": "test_resnet", "epochs": 20,
                                         "batch_size": 32, "lr": 0.003, "device": "cpu"}},
        arms=[{"use": "centralized"}],
        attacks=[{"use": "loss"},
                 {"use": "lira", "params": {"reference_models": 2, "reference": "real"}},
                 {"use": "rmia", "params": {"reference_models": 2, "reference": "real"}}],
        output={"dir": str(tmp / "runs"), "cache": None},
    )
    metrics = run_recipe(recipe, tmp_path=tmp)
    return metrics, metrics.run_dir


def test_overfitted_model_leaks_and_its_control_does_not(audited) -> None:
    metrics, _ = audited
    attacks = metrics["arms"][0]["attacks"]
    assert set(attacks) == {"loss", "lira", "rmia"}
    for name, result in attacks.items():
        assert result["n_members"] == result["n_nonmembers"] == 120
        assert result["auc"] > 0.62, name
        assert abs(result["control_auc"] - 0.5) < 0.12, name
        assert result["auc"] > result["control_auc"] + 0.1, name
        assert result["tpr_at_fpr_0.001"] is None  # 120 non-members cannot resolve 0.1%
        assert "needs at least 1000" in result["not_available"]["tpr_at_fpr_0.001"]
    # LiRA with reference models finds members at a 1% false-positive rate well above
    # chance (0.01); with 120 non-members that rate is about one false positive, so the
    # figure is noisy (0.07 to 0.38 across thread counts with 4 reference models and 40
    # epochs, 0.18 with 2 and 20)
    assert attacks["lira"]["tpr_at_fpr_0.01"] > 0.03
    assert attacks["lira"]["reference"] == "real" and attacks["lira"]["variant"] == "online"
    assert metrics["arms"][0]["audit"]["reference_models"] == {"real": 2}


def test_audit_report_and_roc_figure(audited) -> None:
    _, run_dir = audited
    report = (run_dir / "report.md").read_text()
    assert "## Membership inference" in report and "2 × real (approximation)" in report
    assert "![ROC centralized](roc-centralized.png)" in report
    assert (run_dir / "roc-centralized.png").stat().st_size > 5000


def test_bad_attack_params_name_the_yaml_path(tmp_path: Path, write_recipe, cli) -> None:
    recipe = small_recipe(attacks=[{"use": "lira", "params": {"reference": "shadow"}}])
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2
    assert result.stderr.startswith("error: $.attacks[0].params")
    assert "reference" in result.stderr and "Traceback" not in result.stderr


def test_per_site_models_are_audited_each_with_the_arms_own_procedure(tmp_path: Path,
                                                                      write_recipe, cli
                                                                      ) -> None:
    recipe = small_recipe(
        model={"use": "timm", "params": {"arch": "test_resnet", "epochs": 3,
                                         "batch_size": 32, "device": "cpu"}},
        arms=[{"use": "local"}],
        attacks=[{"use": "lira", "params": {"reference_models": 2, "reference": "arm"}}])
    out = tmp_path / "run"
    result = cli("run", str(write_recipe(recipe)), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    arm = json.loads((out / "metrics.json").read_text())["arms"][0]
    lira = arm["attacks"]["lira"]
    # each site's model against its own images: 60 images, 30 members, 30 non-members
    assert [s["site"] for s in lira["sites"]] == [0, 1, 2]
    assert all(s["n_members"] == s["n_nonmembers"] == 30 for s in lira["sites"])
    assert lira["auc"] == pytest.approx(np.mean([s["auc"] for s in lira["sites"]]))
    assert lira["reference"] == "arm"
    assert arm["audit"]["models"] == ["site 0", "site 1", "site 2"]
    assert arm["audit"]["reference_models"] == {"arm": 6}
    assert arm["audit"]["reference_seconds"]["arm"] > 0


def roc_auc(scores, is_member) -> float:
    """The chance a random member outscores a random non-member (ties count half)."""
    return float(roc_auc_score(np.asarray(is_member, bool), scores))


@pytest.mark.parametrize("attack", [
    LossAttack(LossConfig()),
    LiraAttack(LiraConfig(reference_models=4, reference="real")),
    LiraAttack(LiraConfig(reference_models=2, reference="arm")),
    RmiaAttack(RmiaConfig(reference_models=4, reference="real")),
], ids=["loss", "lira-real", "lira-arm", "rmia"])
def test_attacks_conform_to_the_attack_contract(attack) -> None:
    check_attack(attack)


def test_attacks_are_registered_by_the_plugin() -> None:
    for name in ("loss", "lira", "rmia"):
        assert installed("attack", name).distribution == "synthlearn-mia"
