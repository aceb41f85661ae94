"""The flower runner's other ways to run: ``mode: simulation`` (a federation started on
this machine by the run), TLS end to end (a SuperLink with its certificate, nodes and
runner trusting its CA), and a site task longer than Flower's heartbeat window."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("flwr", reason="Flower (flwr) is not installed")
pytest.importorskip("synthlearn_flower", reason="the synthlearn-flower plugin is not installed")

from flower_helpers import BIN, flower_env, flower_recipe, run_recipe, tls_files  # noqa: E402
from synthlearn_flower.local import LocalFederation  # noqa: E402


def test_simulation_mode_starts_its_own_federation_with_the_same_numbers(
        tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_fedavg", reason="the synthlearn-fedavg plugin is not "
                                                    "installed")
    recipe = flower_recipe({"use": "flower", "params": {"mode": "simulation",
                                                  "threads_per_site": 1}})
    recipe["arms"] = [{"use": "local"}, {"use": "fedavg", "params": {"rounds": 2}}]
    simulated = run_recipe(tmp_path, recipe, "simulated")
    assert simulated.returncode == 0, simulated.stderr
    recipe["runner"] = {"use": "local"}
    local = run_recipe(tmp_path, recipe, "local")
    assert local.returncode == 0, local.stderr
    figures = {name: [(a["metrics"]["accuracy"], a["metrics"]["auc"],
                       a["metrics"]["bytes_to_server"]) for a in json.loads(
        (tmp_path / name / "metrics.json").read_text())["arms"]]
        for name in ("simulated", "local")}
    assert figures["simulated"] == figures["local"]
    leftover = [p for p in Path(tempfile.gettempdir()).glob("synthlearn-flower-*")
                if p.stat().st_mtime > time.time() - 600]
    assert leftover == []  # the run removed its federation's folder


def test_tls_end_to_end_and_a_runner_that_does_not_trust_the_ca_is_refused(
        tmp_path: Path) -> None:
    recipe = flower_recipe({"use": "local"})
    recipe["arms"] = [{"use": "local"}]
    path = tmp_path / "export.yaml"
    path.write_text(yaml.safe_dump(recipe))
    exported = subprocess.run([str(BIN / "synthlearn"), "sites", "export", str(path),
                               "--out", str(tmp_path / "sites")], capture_output=True,
                              text=True, env=flower_env())
    assert exported.returncode == 0, exported.stderr
    tls = tls_files(tmp_path)
    fed = LocalFederation(tmp_path / "federation", tls=tls)
    try:
        for i, site_file in enumerate(sorted((tmp_path / "sites").glob("site-*.safetensors"))):
            fed.add_node(f"node{i}", site_file)
        local = run_recipe(tmp_path, recipe, "local")
        assert local.returncode == 0, local.stderr
        # a CA the SuperLink's certificate does not chain to: the run cannot connect
        (tmp_path / "other-ca").mkdir()
        stranger = tls_files(tmp_path / "other-ca")
        recipe["runner"] = {"use": "flower", "params": {
            "superlink": fed.address, "root_certificates": str(stranger.ca),
            "connect_timeout_s": 60}}
        refused = run_recipe(tmp_path, recipe, "stranger")
        assert refused.returncode == 2, refused.stderr
        line = refused.stderr.strip()
        assert line.startswith(f"error: arm local, task train_local: SuperLink {fed.address}: "
                               "cannot start a run: ") and "CERTIFICATE_VERIFY_FAILED" in line \
            and "\n" not in line, line
        recipe["runner"]["params"]["root_certificates"] = str(tls.ca)
        secure = run_recipe(tmp_path, recipe, "tls")
        assert secure.returncode == 0, (secure.stderr, fed.log("node0"))
    finally:
        fed.stop()
    figures = {name: [(a["metrics"]["accuracy"], a["metrics"]["auc"],
                       a["metrics"]["bytes_to_server"]) for a in json.loads(
        (tmp_path / name / "metrics.json").read_text())["arms"]] for name in ("tls", "local")}
    assert figures["tls"] == figures["local"]


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
