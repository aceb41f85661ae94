"""The quickstart (``make demo``): the whole comparison in miniature on phantom images.

The template must name every kind of arm synthlearn compares (centralized, local,
FedAvg, synthetic learning with a shared GAN, knowledge recycling) with the loss
attack's membership audit, and validate. A shrunken copy of it (same arms, a few
training steps each) runs in this process once per module; its metrics.json must hold
every arm's accuracy, AUC, bytes and loss-attack AUC with control, and its report.md
must open with a summary that names each arm in plain words and what left each site,
then the headline table in order of importance.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from synthlearn.cli import main as cli_main
from synthlearn.report.markdown import render_report

QUICKSTART = REPO / "templates" / "recipes" / "quickstart.yaml"
ARMS = ("centralized", "local", "fedavg", "synthetic", "kr")
#: Training options the model's settings own (``model.params``), never an arm's params.
MODEL_OPTIONS = ("mixup", "label_smoothing", "calibrate", "adapt_bn")
HEADLINE = ["arm", "method", "private", "accuracy", "AUC", "ε", "membership AUC, loss (control)",
            "bytes to server", "bytes to sites", "balanced accuracy", "wall s"]


def quickstart() -> dict[str, Any]:
    """The quickstart template as a dict."""
    return yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))


def shrunk(recipe: dict[str, Any], root: Path) -> dict[str, Any]:
    """The quickstart with its arms kept and their work cut to seconds: 120 phantom
    images of 16x16, timm's ``test_resnet`` for one epoch, 2 FedAvg rounds, 10 GAN
    steps; output and cache under ``root``."""
    recipe = copy.deepcopy(recipe)
    recipe["data"]["params"].update(n_train=120, n_test=60, size=16)
    recipe["model"]["params"].update(arch="test_resnet", epochs=1, batch_size=32)
    for arm in recipe["arms"]:
        if arm["use"] == "fedavg":
            arm["params"].update(rounds=2, local_epochs=1)
        if "generator" in arm:
            # the audit's control fits each site's GAN without its attacked images:
            # 20 of a site's 40 here, fewer than the default min_images
            arm["generator"]["params"].update(steps=10, batch_size=16, min_images=8)
    recipe["output"] = {"dir": str(root / "runs"), "cache": str(root / "cache")}
    return recipe


def cells(line: str) -> list[str]:
    """The cells of one Markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def headline_rows(report: str) -> dict[str, list[str]]:
    """The headline table under "## Results": its header, then each arm's cells by name."""
    results = report.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [cells(line) for line in results.splitlines() if line.startswith("|")]
    assert rows, f"no table under ## Results:\n{results}"
    return {"header": rows[0], **{row[0]: row for row in rows[2:]}}


# --------------------------------------------------------------------------- the template


def test_quickstart_compares_every_kind_of_arm_with_the_loss_attack() -> None:
    recipe = quickstart()
    assert [arm["use"] for arm in recipe["arms"]] == list(ARMS)
    assert recipe["data"]["use"] == "phantom"
    assert [attack["use"] for attack in recipe["attacks"]] == ["loss"]
    synthetic = recipe["arms"][ARMS.index("synthetic")]
    assert synthetic["params"]["share"] == "generator"
    assert synthetic["generator"]["use"] == "gan"
    for arm in recipe["arms"]:  # training options belong to the model, for every arm alike
        assert not set(arm.get("params") or {}) & set(MODEL_OPTIONS), arm
        assert "model" not in arm, "every arm trains the same model in the quickstart"
    assert "# measured:" in QUICKSTART.read_text(encoding="utf-8"), \
        "the recipe must say how long it took, and how that was measured"


def test_quickstart_template_validates(cli) -> None:
    result = cli("validate", QUICKSTART)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok (phantom:")
    assert "3 sites" in result.stdout and "5 arms" in result.stdout


# --------------------------------------------------------------------------- a small run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The shrunken quickstart, run once in this process: (metrics.json, report.md)."""
    root = tmp_path_factory.mktemp("quickstart")
    path = root / "quickstart.yaml"
    path.write_text(yaml.safe_dump(shrunk(quickstart(), root), sort_keys=False),
                    encoding="utf-8")
    out = root / "run"
    assert cli_main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return metrics, (out / "report.md").read_text(encoding="utf-8")


def test_every_arm_reports_utility_privacy_and_bytes(small_run) -> None:
    metrics, _ = small_run
    arms = {arm["name"]: arm for arm in metrics["arms"]}
    assert list(arms) == list(ARMS)
    for name, arm in arms.items():
        m = arm["metrics"]
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["auc"] <= 1.0, name
        assert m["bytes_to_server"] > 0, name
        loss = arm["attacks"]["loss"]
        assert 0.0 <= loss["auc"] <= 1.0 and 0.0 <= loss["control_auc"] <= 1.0, name
        assert loss["n_members"] == loss["n_nonmembers"] > 0, name
        assert arm["summary"], name  # the method in plain words, for the report
    assert not arms["centralized"]["private"]
    assert all(arms[name]["private"] for name in ARMS[1:])
    # what moved: fedavg sends the model both ways every round, the one-shot arms do not
    assert arms["fedavg"]["metrics"]["bytes_to_sites"] > 0
    assert arms["synthetic"]["metrics"]["bytes_to_sites"] == 0
    assert arms["centralized"]["metrics"]["bytes_to_sites"] == 0
    n_images = metrics["dataset"]["n_train"]
    assert arms["centralized"]["metrics"]["bytes_to_server"] >= n_images * 16 * 16


def test_report_opens_with_what_was_compared(small_run) -> None:
    metrics, report = small_run
    opening = report.split("## What was compared", 1)[1].split("\n## ", 1)[0]
    assert ("Five ways to get one image classifier from the same 120 real training images, "
            "split over 3 sites (hospitals)") in opening
    assert "the same 60 real held-out test images, which no site ever sees" in opening
    bullets = {line.split("**")[1]: line for line in opening.splitlines()
               if line.startswith("- **")}
    assert list(bullets) == list(ARMS)
    for arm in metrics["arms"]:
        line = bullets[arm["name"]]
        assert arm["summary"].rstrip(".") in line  # the method in plain words
        assert f"*Left each site:* {'; '.join(arm['shared'])}." in line
    assert "raw images" in bullets["centralized"] and "not private" in bullets["centralized"]
    assert "generator" in bullets["synthetic"].split("*Left each site:*")[1]
    assert "every round" in bullets["fedavg"]
    assert "the table shows their mean" in bullets["local"]
    assert report.index("## What was compared") < report.index("## Results")


def test_report_headline_table_in_order_of_importance(small_run) -> None:
    metrics, report = small_run
    table = headline_rows(report)
    assert table["header"] == HEADLINE
    for arm in metrics["arms"]:
        m, loss = arm["metrics"], arm["attacks"]["loss"]
        row = dict(zip(HEADLINE, table[arm["name"]], strict=True))
        assert row["accuracy"] == f"{m['accuracy']:.3f}"
        assert row["AUC"] == f"{m['auc']:.3f}"
        assert row["ε"] == "∞" and arm["privacy"]["epsilon"] is None  # no arm under DP
        assert row["membership AUC, loss (control)"] == \
            f"{loss['auc']:.3f} ({loss['control_auc']:.3f})"
    results = report.split("## Results", 1)[1]
    assert "**Membership AUC**" in results.split("|", 1)[0]  # explained above the table


# --------------------------------------------------------------------------- report unit


def test_headline_table_with_two_attacks_and_an_unattacked_arm() -> None:
    arm = {"name": "a", "use": "local", "private": True,
           "metrics": {"accuracy": 0.8, "auc": 0.9, "bytes_to_server": 2048,
                       "bytes_to_sites": 0, "balanced_accuracy": 0.75, "wall_s": 1.0},
           "attacks": {"loss": {"auc": 0.61, "control_auc": 0.49},
                       "lira": {"auc": 0.7, "control_auc": None}}}
    other = {"name": "b", "use": "centralized", "private": False, "metrics": {},
             "attacks": {}}
    report = render_report({"arms": [arm, other]})
    table = headline_rows(report)
    assert table["header"][3:8] == ["accuracy", "AUC", "ε", "membership AUC, loss (control)",
                                    "membership AUC, lira (control)"]
    # metrics without a privacy entry (older files) show n/a for ε
    assert table["a"][3:9] == ["0.800", "0.900", "n/a", "0.610 (0.490)", "0.700 (n/a)",
                               "2.0 KiB"]
    assert table["b"][6:8] == ["n/a", "n/a"]
    assert len(table["header"]) == len(table["a"]) == len(table["b"])
    assert "the upper bound for the private arms" in report
    assert "upper bound" not in render_report({"arms": [arm]})  # no pooling arm to be one


# --------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_quickstart_shows_the_comparison(tmp_path: Path) -> None:
    """The template as ``make demo`` runs it (about two minutes): every arm learns
    something, the baselines bracket the private arms' cost, and the synthetic arms
    leak no more membership than their controls."""
    recipe = quickstart()
    recipe["output"] = {"dir": str(tmp_path / "runs"), "cache": str(tmp_path / "cache")}
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    assert cli_main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    arms = {arm["name"]: arm for arm in metrics["arms"]}
    m = {name: arm["metrics"] for name, arm in arms.items()}
    assert m["centralized"]["accuracy"] >= 0.8 and m["fedavg"]["accuracy"] >= 0.75
    for name in ARMS:
        assert m[name]["auc"] >= 0.6, (name, m[name])
    moved = {name: m[name]["bytes_to_server"] + m[name]["bytes_to_sites"] for name in ARMS}
    # FedAvg sends the model both ways every round; kr a generator and a teacher once;
    # synthetic a generator once
    assert moved["fedavg"] > 5 * moved["kr"] and moved["kr"] > moved["synthetic"]
    for name in ("synthetic", "kr"):
        loss = arms[name]["attacks"]["loss"]
        assert abs(loss["auc"] - loss["control_auc"]) < 0.1, (name, loss)
