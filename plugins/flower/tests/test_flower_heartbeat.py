"""A site task longer than Flower's heartbeat window (slow: a generator fit of minutes).
Simulation mode and TLS are checked in ``test_flower.py``, against its federation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="Flower (flwr) is not installed")
pytest.importorskip("synthlearn_flower", reason="the synthlearn-flower plugin is not installed")

from flower_helpers import flower_recipe, run_recipe  # noqa: E402


@pytest.mark.slow
def test_a_site_task_longer_than_the_heartbeat_window_completes(tmp_path: Path) -> None:
    """A generator fit of minutes: the node keeps its task alive (Flower takes a task
    with no heartbeat for about a minute as dead, error 8)."""
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    recipe = flower_recipe({"use": "flower", "params": {"mode": "simulation",
                                                  "threads_per_site": 1}})
    recipe["arms"] = [{"name": "synthetic", "use": "synthetic",
                       "params": {"share": "generator"},
                       "generator": {"use": "gan", "params": {"steps": 6000}}}]
    start = time.monotonic()
    done = run_recipe(tmp_path, recipe, "long")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "long" / "metrics.json").read_text())
    assert metrics["arms"][0]["metrics"]["bytes_to_server"] > 0
    assert time.monotonic() - start > 90, "the fit was too short to test the heartbeat"
