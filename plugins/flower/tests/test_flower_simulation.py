"""``mode: simulation``: the run starts a plain-HTTP federation on this machine (a
SuperLink and a ``synthlearn-node`` per site), gets the local runner's numbers and
removes the federation's folder. Its own module, so that it runs beside the long
``test_flower.py`` rather than after it."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="Flower (flwr) is not installed")
pytest.importorskip("synthlearn_flower", reason="the synthlearn-flower plugin is not installed")

from flower_helpers import flower_recipe, run_recipe  # noqa: E402


def test_simulation_mode_starts_its_own_federation_with_the_same_numbers(
        tmp_path: Path) -> None:
    recipe = flower_recipe({"use": "flower", "params": {"mode": "simulation",
                                                         "threads_per_site": 1}})
    recipe["arms"] = [{"use": "local"}]  # one task per site: Flower's start is what counts
    started = time.time()
    simulated = run_recipe(tmp_path, recipe, "simulated")
    assert simulated.returncode == 0, simulated.stderr
    recipe["runner"] = {"use": "local"}
    local = run_recipe(tmp_path, recipe, "local")
    assert local.returncode == 0, local.stderr
    figures = {name: [(a["name"], a["metrics"]["accuracy"], a["metrics"]["auc"],
                       a["metrics"]["bytes_to_server"], a["site_bytes"]) for a in json.loads(
        (tmp_path / name / "metrics.json").read_text())["arms"]]
        for name in ("simulated", "local")}
    assert figures["simulated"] == figures["local"]
    assert all(arm[3] > 0 for arm in figures["simulated"])
    leftover = [p for p in Path(tempfile.gettempdir()).glob("synthlearn-flower-*")
                if p.stat().st_mtime >= started - 1]
    assert leftover == []  # the run removed its federation's folder
