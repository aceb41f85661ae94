"""The ``flower`` runner and ``synthlearn-node`` against a real Flower SuperLink (with
TLS: its own certificate, nodes and runner trusting its CA) and three real SuperNodes,
each a separate process on localhost given only its own site file: the numbers equal
the local runner's, bytes are counted, a runner that does not trust the CA is refused,
and a node that dies mid-arm ends the run with one line naming the site.

One federation and one local-runner reference serve the whole module: most of the time
is Flower starting its processes, and the tiny models and phantom data keep the work
itself to seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("flwr", reason="Flower (flwr) is not installed")
pytest.importorskip("synthlearn_flower", reason="the synthlearn-flower plugin is not installed")

from flower_helpers import BIN, flower_env, flower_recipe, run_recipe, tls_files  # noqa: E402
from synthlearn.testing import installed  # noqa: E402
from synthlearn_flower import FlowerConfig  # noqa: E402
from synthlearn_flower.local import LocalFederation  # noqa: E402


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    pytest.importorskip("synthlearn_fedavg", reason="the synthlearn-fedavg plugin is not "
                                                    "installed")
    folder = tmp_path_factory.mktemp("federation")
    recipe = folder / "export.yaml"
    recipe.write_text(yaml.safe_dump(flower_recipe({"use": "local"})))
    exported = subprocess.run([str(BIN / "synthlearn"), "sites", "export", str(recipe),
                               "--out", str(folder / "sites")], capture_output=True,
                              text=True, env=flower_env())
    assert exported.returncode == 0, exported.stderr
    # a real SuperLink with TLS, and a synthlearn-node per site file trusting its CA
    fed = LocalFederation(folder, tls=tls_files(folder))
    for i, path in enumerate(sorted((folder / "sites").glob("site-*.safetensors"))):
        fed.add_node(f"node{i}", path)
    yield fed
    fed.stop()


def tls_runner(federation: LocalFederation, **params: object) -> dict:
    """The flower runner for the module's federation, trusting its CA."""
    return {"use": "flower", "params": {
        "superlink": federation.address, "root_certificates": str(federation.tls.ca),
        "connect_timeout_s": 90, **params}}


@pytest.fixture(scope="module")
def local_metrics(federation: LocalFederation) -> dict:
    """The same recipe through the local runner, on the whole dataset: the numbers every
    run through the nodes must give."""
    local = run_recipe(federation.folder, flower_recipe({"use": "local"}), "local")
    assert local.returncode == 0, local.stderr
    return json.loads((federation.folder / "local" / "metrics.json").read_text())


def test_site_work_on_real_supernodes_gives_the_local_runners_numbers(
        federation: LocalFederation, local_metrics: dict) -> None:
    folder = federation.folder
    remote = run_recipe(folder, flower_recipe(tls_runner(federation)), "flower")
    assert remote.returncode == 0, (remote.stderr, federation.log("node0"))
    by_runner = {"flower": {a["name"]: a for a in json.loads(
        (folder / "flower" / "metrics.json").read_text())["arms"]},
        "local": {a["name"]: a for a in local_metrics["arms"]}}
    for arm in ("local", "fedavg", "synthetic"):
        here, there = by_runner["local"][arm], by_runner["flower"][arm]
        for key in ("accuracy", "auc", "bytes_to_server", "bytes_to_sites"):
            assert there["metrics"][key] == here["metrics"][key], (arm, key)
        assert there["site_bytes"] == here["site_bytes"]
    assert by_runner["flower"]["fedavg"]["metrics"]["bytes_to_sites"] > 0
    # each node ran its own site's tasks: site 0's node logged only site 0
    log = federation.log("node0")
    assert "site 0: task 'train_local'" in log and "site 1:" not in log


def test_a_server_holding_only_the_manifest_and_held_out_splits_gets_the_same_numbers(
        federation: LocalFederation, local_metrics: dict) -> None:
    folder = federation.folder
    server = folder / "server-only"  # what the researcher keeps: no site file at all
    server.mkdir()
    for name in ("sites.json", "server.safetensors"):
        (server / name).write_bytes((folder / "sites" / name).read_bytes())
    recipe = flower_recipe(tls_runner(federation))
    recipe["data"] = {"use": "exported", "params": {"dir": str(server)}}
    remote = run_recipe(folder, recipe, "exported")
    assert remote.returncode == 0, (remote.stderr, federation.log("node0"))
    metrics = {"exported": json.loads((folder / "exported" / "metrics.json").read_text()),
               "local-full": local_metrics}
    for here, there in zip(metrics["local-full"]["arms"], metrics["exported"]["arms"],
                           strict=True):
        for key in ("accuracy", "auc", "bytes_to_server", "bytes_to_sites"):
            assert there["metrics"][key] == here["metrics"][key], (here["name"], key)
        assert there.get("validation") == here.get("validation")
    assert metrics["exported"]["sites"] == metrics["local-full"]["sites"]
    assert metrics["exported"]["dataset"]["n_train"] == 180
    synthetic = metrics["exported"]["arms"][2]
    assert "memorisation" not in synthetic  # it needs the sites' images
    assert any("memorisation" in w and "data: exported" in w
               for w in metrics["exported"]["warnings"])
    # the local runner cannot do site work without the images: one line, before work
    recipe["runner"] = {"use": "local"}
    refused = run_recipe(folder, recipe, "exported-local")
    assert refused.returncode == 2 and refused.stderr.strip().startswith(
        "error: $.runner: `data: exported` keeps every site's images at its node"), \
        refused.stderr
    assert not (folder / "exported-local").exists()


def test_a_runner_that_does_not_trust_the_ca_is_refused(federation: LocalFederation,
                                                         tmp_path: Path) -> None:
    stranger = tls_files(tmp_path)  # a CA the SuperLink's certificate does not chain to
    recipe = flower_recipe(tls_runner(federation, root_certificates=str(stranger.ca),
                                      connect_timeout_s=60))
    recipe["arms"] = [{"use": "local"}]
    refused = run_recipe(tmp_path, recipe, "stranger")
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert line.startswith(f"error: arm local, task train_local: SuperLink "
                           f"{federation.address}: cannot start a run: ") and \
        "CERTIFICATE_VERIFY_FAILED" in line and "\n" not in line, line
    assert not (tmp_path / "stranger").exists()


def test_a_node_that_dies_mid_arm_ends_the_run_naming_its_site(federation: LocalFederation
                                                                ) -> None:
    folder = federation.folder
    recipe = flower_recipe(tls_runner(federation, connect_timeout_s=60, task_timeout_s=15))
    recipe["arms"] = [{"use": "fedavg", "params": {"rounds": 3}}]
    path = folder / "dead.yaml"
    path.write_text(yaml.safe_dump(recipe))
    before = federation.log("node1").count("task 'round-0'")
    run = subprocess.Popen([str(BIN / "synthlearn"), "run", str(path), "--out",
                            str(folder / "dead"), "--quiet"], stderr=subprocess.PIPE,
                           text=True, env=flower_env())
    deadline = time.monotonic() + 120
    while (federation.log("node1").count("task 'round-0'") == before
           and time.monotonic() < deadline):
        time.sleep(0.2)
    os.killpg(federation.nodes["node1"].pid, signal.SIGKILL)  # site 1's machine goes down
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: arm fedavg, site 1, round "), last
    # the message expires (its time to live is task_timeout_s) or the wait runs out
    assert ("site failed: NodeError: " in last and "(Flower error 3)" in last) or (
        "site failed: TimeoutError: no result within task_timeout_s (15 s)" in last), last
    assert "Traceback" not in stderr
    assert not (folder / "dead").exists()  # nothing half-written


def test_insecure_only_on_this_machine_and_the_runner_is_registered() -> None:
    assert installed("runner", "flower").distribution == "synthlearn-flower"
    FlowerConfig(superlink="localhost:9093", insecure=True)
    FlowerConfig(mode="simulation", threads_per_site=2)
    with pytest.raises(ValueError, match="for mode: simulation"):
        FlowerConfig(threads_per_site=2)
    with pytest.raises(ValueError, match="only for a SuperLink on this machine"):
        FlowerConfig(superlink="10.1.2.3:9093", insecure=True)
    with pytest.raises(ValueError, match="HOST:PORT"):
        FlowerConfig(superlink="no-port")


def test_the_node_refuses_another_site_and_unregistered_tasks(tmp_path: Path) -> None:
    """What a node answers, message by message (no network: the handler itself)."""
    from flwr.app import Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity
    from synthlearn.api import load_plugins, read_site_file, site_payload
    from synthlearn.testing import tiny_dataset, tiny_sites
    from synthlearn_flower.messages import HELLO, SITE_TASK, content, read
    from synthlearn_flower.node import handle

    dataset = tiny_dataset()
    site = tiny_sites(dataset, 3)[2]
    payload = site_payload(site, dataset.class_names, dataset.attributes, "t", 0)
    (tmp_path / "s.safetensors").write_bytes(payload.to_bytes())
    site_file, plugins = read_site_file(tmp_path / "s.safetensors"), load_plugins()
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 8, 9  # as in a task

    def ask(kind: str, meta: dict | None = None) -> tuple[Message, bool]:
        message = Message(RecordDict() if meta is None else content(meta), dst_node_id=1,
                          message_type=kind)
        return handle(message, site_file, plugins, None, quiet=True)

    reply, ok = ask(HELLO)
    assert ok and read(reply)[0]["site"] == 2 and read(reply)[0]["n"] == len(site.data)
    reply, ok = ask(SITE_TASK, {"format": "synthlearn-task", "version": 1, "site": 2,
                                "task": {"fn": "os:system", "config": "rm -rf /"},
                                "env": {}})
    assert not ok and "'os:system' is not registered" in reply.error.reason
    reply, ok = ask(SITE_TASK, {"format": "synthlearn-task", "version": 1, "site": 0})
    assert not ok and "this node holds site 2" in reply.error.reason
    reply, ok = ask("query.other")
    assert not ok and "answers query.hello and query.site_task" in reply.error.reason
