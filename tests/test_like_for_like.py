"""Every arm trains and finishes its model alike: training options and site steps are
the model's settings, the centralized and local arms take the same steps as the others,
a run warns when its arms differ, and the validation split is scored beside the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import small_recipe
from synthlearn.execution.run import Run
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe

STEPS = {"adapt_bn": True, "calibrate": True}


def _run(recipe: dict, tmp: Path, name: str = "run") -> dict:
    recipe.setdefault("output", {"dir": str(tmp / "runs"), "cache": str(tmp / "cache")})
    plugins = load_plugins()
    out = Run(check_recipe(recipe, plugins), plugins, quiet=True).execute(str(tmp / name))
    return json.loads((out / "metrics.json").read_text())


def _model(**training: object) -> dict:
    model = small_recipe()["model"]
    return {"use": model["use"], "params": {**model["params"], "epochs": 1, **training}}


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The small recipe's centralized and local arms with and without the site steps."""
    tmp = tmp_path_factory.mktemp("like")
    plain = _run(small_recipe(model=_model()), tmp, "plain")
    steps = _run(small_recipe(model=_model(**STEPS)), tmp, "steps")
    return plain, steps


def test_centralized_takes_the_site_steps_like_every_server_model(stepped) -> None:
    plain, steps = (m["arms"][0] for m in stepped)
    assert plain["use"] == steps["use"] == "centralized"
    assert "steps" not in plain["details"] and plain["metrics"]["bytes_to_sites"] == 0
    trained, adapted, calibrated = steps["details"]["steps"]
    assert [s["step"] for s in (trained, adapted, calibrated)] == [
        "trained", "adapt_bn", "calibrate"]
    # same seeds, same training: the model as trained is the plain arm's
    assert trained["accuracy"] == plain["metrics"]["accuracy"]
    assert calibrated["accuracy"] == steps["metrics"]["accuracy"]
    biases = steps["details"]["calibration_biases"]
    assert len(biases) == 2 and abs(sum(biases)) < 1e-9
    assert steps["metrics"]["bytes_to_sites"] > 0  # the model visited the sites
    assert steps["training"]["calibrate"] is True and plain["training"]["calibrate"] is False


def test_local_sites_take_the_steps_on_their_own_models(stepped) -> None:
    plain, steps = (m["arms"][1] for m in stepped)
    assert steps["details"]["site_steps"] == ["adapt_bn", "calibrate"]
    assert "site_steps" not in plain["details"]
    # the site models changed (new statistics and biases) and nothing more crossed
    assert [s["auc"] for s in steps["sites"]] != [s["auc"] for s in plain["sites"]]
    assert steps["metrics"]["bytes_to_sites"] == plain["metrics"]["bytes_to_sites"] == 0


def test_arms_that_train_differently_are_flagged(tmp_path: Path, capsys) -> None:
    recipe = small_recipe(model=_model(), arms=[
        {"use": "centralized"},
        {"use": "local", "model": _model(mixup=0.4, calibrate=True)},
    ])
    metrics = _run(recipe, tmp_path)
    err = capsys.readouterr().err
    assert "not like for like" in err and "mixup=0.4" in err and "calibrate=True" in err
    assert metrics["arms"][1]["training"]["mixup"] == 0.4
    assert metrics["arms"][0]["training"]["mixup"] == 0.0


def test_one_recipe_model_trains_every_arm_alike(tmp_path: Path, capsys) -> None:
    _run(small_recipe(model=_model(mixup=0.4)), tmp_path)
    assert "not like for like" not in capsys.readouterr().err


def _medmnist_file(root: Path, seed: int = 0) -> None:
    """A tiny file in the standard MedMNIST layout: two classes told apart by
    brightness; its val split is in distribution, its test split shifted darker."""
    rng = np.random.default_rng(seed)

    def split(n: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, size=(n, 1)).astype(np.uint8)
        base = np.where(labels[:, :, None] == 1, 150, 90) - shift
        noise = rng.integers(-40, 40, size=(n, 28, 28))
        return np.clip(base + noise, 0, 255).astype(np.uint8), labels

    arrays = {}
    for name, n, shift in (("train", 150, 0), ("val", 60, 0), ("test", 60, 50)):
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = split(n, shift)
    np.savez(root / "tinymnist.npz", **arrays)


def test_the_validation_split_is_scored_beside_the_test_split(tmp_path: Path) -> None:
    _medmnist_file(tmp_path)
    data = {"use": "medmnist", "params": {"subset": "tinymnist", "root": str(tmp_path),
                                          "download": False}}
    metrics = _run(small_recipe(data=data, model=_model()), tmp_path)
    assert metrics["dataset"]["n_validation"] == 60
    for arm in metrics["arms"]:
        val = arm["validation"]
        assert val["n"] == 60 and 0.0 <= val["accuracy"] <= 1.0 and val["auc"] is not None
    # the test split is shifted, the val split is not: their figures differ
    central = metrics["arms"][0]
    assert central["validation"]["accuracy"] != central["metrics"]["accuracy"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "val accuracy" in report and "val AUC" in report

    scored_on_val = small_recipe(model=_model(), data={
        **data, "params": {**data["params"], "test_split": "val"}})
    again = _run(scored_on_val, tmp_path, "on-val")
    assert again["dataset"]["n_validation"] is None
    assert "validation" not in again["arms"][0]
    # scored on val, the headline is exactly the first run's validation figure
    assert again["arms"][0]["metrics"]["accuracy"] == central["validation"]["accuracy"]
