"""The membership audit wastes no training and survives a kill: ``reference: real``
models are trained once per run and shared by every arm that needs the same ones, and
every arm's finished audit is kept in the cache, so a re-run (after a kill or not)
reuses it."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import small_recipe

pytest.importorskip("synthlearn_mia", reason="the synthlearn-mia plugin is not installed")
pytest.importorskip("synthlearn_fedavg", reason="the synthlearn-fedavg plugin is not installed")

import synthlearn.arms.context  # noqa: E402
import synthlearn.execution.run  # noqa: E402
import synthlearn.models.training  # noqa: E402
from synthlearn.cli import main  # noqa: E402

ARMS = [{"use": "centralized"}, {"use": "fedavg", "params": {"rounds": 1}}]


def recipe(arms: list[dict[str, Any]] = ARMS) -> dict[str, Any]:
    """Two server-model arms on tiny phantom data, audited by the loss attack and LiRA
    with two plain reference models."""
    return small_recipe(
        name="shared-audit",
        data={"use": "phantom", "params": {"n_train": 120, "n_test": 60, "size": 16}},
        sites={"count": 2, "partition": {"use": "iid"}},
        model={"use": "timm", "params": {"arch": "test_resnet", "epochs": 1,
                                         "batch_size": 32, "device": "cpu"}},
        arms=arms,
        attacks=[{"use": "loss"},
                 {"use": "lira", "params": {"reference_models": 2, "reference": "real"}}])


class Counter:
    """Counts the classifier trainings of the audit's plain reference models (by the
    progress label ``train_classifier`` gets) and lets every training happen."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.descs: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.descs.append(str(kwargs.get("desc", "")))
        return self.real(*args, **kwargs)

    @property
    def references(self) -> int:
        return sum("reference" in d for d in self.descs)


def run(tmp: Path, name: str, cache: Path | None, arms: list[dict[str, Any]] = ARMS,
        fail_after_first_audit: bool = False) -> tuple[dict[str, Any], Counter, str]:
    """Run the recipe in this process: metrics.json, the training counter, stderr.
    ``fail_after_first_audit`` makes the run die (as a kill would) when the second
    arm's audit starts, after the first arm's audit has finished."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        **recipe(arms), "output": {"dir": str(tmp / "runs"),
                                   "cache": None if cache is None else str(cache)}}))
    counter = Counter(synthlearn.models.training.train_classifier)
    real_audit = synthlearn.execution.run.audit_arm
    calls: list[str] = []

    def audit_then_die(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(ctx.name)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_audit(ctx, *args, **kwargs)

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setattr(synthlearn.models.training, "train_classifier", counter)
        mp.setattr(synthlearn.arms.context, "train_classifier", counter)
        if fail_after_first_audit:
            mp.setattr(synthlearn.execution.run, "audit_arm", audit_then_die)
            with contextlib.suppress(RuntimeError):
                assert main(["run", str(path), "--out", str(tmp / name)]) != 0
            assert calls == ["centralized", "fedavg"]  # died as the second audit began
            return {}, counter, err.getvalue()
        assert main(["run", str(path), "--out", str(tmp / name)]) == 0, err.getvalue()
    metrics = json.loads((tmp / name / "metrics.json").read_text())
    return metrics, counter, err.getvalue()


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory):
    """The recipe run twice with one cache."""
    tmp = tmp_path_factory.mktemp("shared-audit")
    first = run(tmp, "first", tmp / "cache")
    second = run(tmp, "second", tmp / "cache")
    return tmp, first, second


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    return {arm["name"]: arm["attacks"] for arm in metrics["arms"]}


def test_plain_reference_models_are_trained_once_per_run(twice) -> None:
    tmp, (metrics, counter, err), _ = twice
    assert counter.references == 2  # not 2 per arm
    central, fedavg = (arm["audit"] for arm in metrics["arms"])
    assert central["reference_models"] == fedavg["reference_models"] == {"real": 2}
    assert central["reference_models_trained"] == {"real": 2}
    assert central["reference_models_shared"] == {"real": 0}
    assert fedavg["reference_models_trained"] == {"real": 0}
    assert fedavg["reference_models_shared"] == {"real": 2}
    # seconds per model count training done here only: none for the arm that reused
    assert central["reference_seconds"]["real"] > 0
    assert fedavg["reference_seconds"] == {}
    assert "reused, trained for arm centralized earlier in this run" in err
    # the shared models give the fedavg arm exactly the figures it gets auditing alone
    # (no cache: it trains its own reference models)
    alone, alone_counter, _ = run(tmp, "alone", None, arms=[ARMS[1]])
    assert alone_counter.references == 2
    assert alone["arms"][0]["audit"]["reference_models_trained"] == {"real": 2}
    assert figures(alone)["fedavg"] == figures(metrics)["fedavg"]


def test_a_second_run_reuses_every_arms_audit(twice) -> None:
    tmp, (first, first_counter, _), (second, counter, err) = twice
    assert counter.references == 0
    # the first run trained the centralized model, its control and two reference
    # models; the second only the centralized model itself (its audit is reused)
    assert len(first_counter.descs) == 4 and len(counter.descs) == 1
    for arm in second["arms"]:
        assert arm["audit"]["reused"] is True
        assert arm["audit"]["reference_models_trained"] == {"real": 0}
        assert arm["audit"]["reference_seconds"] == {}
        assert arm["audit"]["first_computed"]["reference_models_trained"] in (
            {"real": 2}, {"real": 0})
    assert figures(second) == figures(first)  # bit for bit (JSON floats round-trip)
    assert err.count("membership audit reused from the cache") == 2
    # the ROC figures are drawn from the stored curves
    assert (tmp / "second" / "roc-fedavg.png").stat().st_size > 5000


def test_a_run_killed_after_the_first_audit_resumes_from_it(twice, tmp_path: Path) -> None:
    _, (uninterrupted, _, _), _ = twice
    cache = tmp_path / "cache"
    _, killed, _ = run(tmp_path, "killed", cache, fail_after_first_audit=True)
    assert killed.references == 2  # the first arm's audit trained them, then the kill
    metrics, counter, err = run(tmp_path, "resumed", cache)
    central, fedavg = (arm["audit"] for arm in metrics["arms"])
    assert central["reused"] is True
    assert "centralized: membership audit reused from the cache" in err
    # the second arm is audited now, with the reference models the killed run stored
    assert fedavg["reused"] is False
    assert fedavg["reference_models_cached"] == {"real": 2}
    assert fedavg["reference_models_trained"] == {"real": 0}
    assert counter.references == 0
    assert "reference model 1/2 (real): reused from the cache" in err
    assert figures(metrics) == figures(uninterrupted)


def stored_audit() -> Any:
    from synthlearn.evaluation.audit_store import ArmAudit

    fpr = np.array([0.0, 0.1 + 1e-17, 1 / 3, 1.0])
    tpr = np.array([0.0, 0.5, 2 / 3, 1.0])
    return ArmAudit(attacks={"lira": {"auc": 0.6123456789012345, "tpr_at_fpr_0.001": None},
                             "loss": {"auc": 0.5}},
                    info={"models": ["server model"], "reference_models": {"real": 2}},
                    rocs={"lira": {"target": (fpr, tpr), "control": (tpr * 0.5, tpr)},
                          "loss": {"target": (fpr, fpr), "control": (fpr, fpr)}})


def test_a_stored_audit_round_trips_exactly_and_keeps_its_order() -> None:
    from synthlearn.evaluation.audit_store import ArmAudit
    from synthlearn.sitework.exchange import Payload

    audit = stored_audit()
    back = ArmAudit.from_payload(Payload.from_bytes(audit.to_payload().to_bytes(), "test"))
    assert back.attacks == audit.attacks and list(back.attacks) == ["lira", "loss"]
    assert back.info == audit.info
    for name, curves in audit.rocs.items():
        for curve, (fpr, tpr) in curves.items():
            assert np.array_equal(back.rocs[name][curve][0], fpr)
            assert np.array_equal(back.rocs[name][curve][1], tpr)


def test_a_malformed_stored_audit_is_recomputed_with_a_warning(tmp_path: Path,
                                                               capsys) -> None:
    from synthlearn.evaluation.audit_store import AuditStore
    from synthlearn.sitework.cache import SiteCache

    cache = SiteCache(tmp_path / "cache")
    store = AuditStore(cache)
    good = stored_audit()
    store.keep_audit("a" * 64, good)
    assert store.find_audit("a" * 64, "arm x").attacks == good.attacks
    bad = stored_audit()
    bad.rocs["loss"]["target"] = (np.array([0.0, 2.0]), np.array([0.0, 1.0]))  # FPR 2
    store.keep_audit("b" * 64, bad)
    assert store.find_audit("b" * 64, "arm x, stored audit") is None
    assert ("warning: arm x, stored audit: stored audit not usable (the ROC curve "
            "target.fpr of loss leaves [0, 1]); auditing again") in capsys.readouterr().err
    assert AuditStore(None).find_audit("a" * 64, "arm x") is None  # no cache: no reuse
