"""Site work as a message (``synthlearn.sitework.remote``): a request is plain JSON, the
node runs only registered site tasks with components from its own plugins, and a run
whose site work goes through requests gives the local runner's numbers exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from synthlearn import ComponentSpec, NoParams, SiteTaskError, SynthlearnError, hookimpl
from synthlearn.api import Payload, SiteTask
from synthlearn.loading.manager import load_plugins
from synthlearn.sitework.remote import run_task_request, task_request
from synthlearn.sitework.site_file import read_site_file, site_payload
from synthlearn.testing import make_arm_context, run_recipe, small_recipe, tiny_dataset


class Loopback:
    """A runner that does what a remote runner does, in this process: each site's data
    goes through its own site file, each task through a JSON request that the 'node'
    resolves from its plugins, and only bytes come back."""

    def __init__(self, config: object = None) -> None:
        self.files: dict[int, Path] = {}
        self.plugins = load_plugins()

    def execute(self, task, sites, envs, inbound) -> Iterator[tuple[int, bytes]]:
        for site in sites:
            if site.id not in self.files:  # the 'deployment': the site's own file
                path = STATE["folder"] / f"site-{site.id}.safetensors"
                path.write_bytes(site_payload(site, STATE["dataset"].class_names,
                                              STATE["dataset"].attributes, "t", 0).to_bytes())
                self.files[site.id] = path
            request = json.loads(json.dumps(task_request(task, envs[site.id], site.id)))
            STATE["requests"] += 1
            try:
                blob = run_task_request(request, inbound.get(site.id),
                                        read_site_file(self.files[site.id]), self.plugins)
            except Exception as exc:
                raise SiteTaskError(site.id, exc) from exc
            yield site.id, blob


#: What the loopback runner needs beside the sites: the dataset's facts for the site
#: files, a folder for them, and a count of the requests it made.
STATE: dict = {}


class LoopbackPlugin:
    @hookimpl
    def synthlearn_register_runners(self) -> list[ComponentSpec]:
        return [ComponentSpec("loopback", NoParams, Loopback, "site work through requests")]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    STATE.update(folder=tmp_path_factory.mktemp("files"), dataset=tiny_dataset(), requests=0)
    arms = [{"use": "local"},
            {"name": "synthetic", "use": "synthetic", "params": {"share": "generator"},
             "generator": {"use": "gan", "params": {"steps": 20}}},
            {"name": "chained", "use": "synthetic", "params": {"share": "samples"},
             "generator": {"use": "gan", "params": {"steps": 20}},
             "filter": [{"use": "near-copy"}, {"use": "near-copy", "params": {"quantile": 0.3}}]},
            {"name": "calibrated", "use": "centralized",
             "model": {"use": "timm", "params": {**small_recipe()["model"]["params"],
                                                 "calibrate": True}}}]
    out = {}
    for runner in ("local", "loopback"):
        recipe = small_recipe(arms=arms, runner={"use": runner})
        out[runner] = run_recipe(recipe, plugins=[LoopbackPlugin()],
                                 tmp_path=tmp_path_factory.mktemp(runner))
    out["requests"] = STATE["requests"]
    return out


def test_site_work_through_requests_gives_the_local_runners_numbers(both) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    assert both["requests"] >= 9  # every site task of the three arms went as a request
    local, remote = ({a["name"]: a for a in both[r]["arms"]} for r in ("local", "loopback"))
    for name in local:
        for key in ("accuracy", "auc", "bytes_to_server", "bytes_to_sites"):
            assert remote[name]["metrics"][key] == local[name]["metrics"][key], (name, key)
    # a chain of filters crosses as a list and screens alike at the node
    screenings = [[site["screening"] for site in arms["chained"]["details"]["per_site"]]
                  for arms in (local, remote)]
    assert screenings[0] == screenings[1]
    assert {s["filter"] for s in screenings[0]} == {"near-copy+near-copy"}
    assert all({"0.near-copy.quantile", "1.near-copy.quantile"} <= set(s["about"])
               for s in screenings[0])


def _request(task_fn, config, tmp_path: Path):
    ctx = make_arm_context("local", tmp_path=tmp_path)
    site = ctx.sites[0]
    task = SiteTask("t", task_fn, config, "x")
    request = json.loads(json.dumps(task_request(task, ctx.site_env(site, task), site.id)))
    path = tmp_path / "site.safetensors"
    path.write_bytes(site_payload(site, tiny_dataset().class_names, tiny_dataset().attributes,
                                  "t", 0).to_bytes())
    return request, read_site_file(path), ctx


def _sends_nothing(site, config, inbound, env) -> Payload:
    return Payload(meta={"ran": True})


def test_a_node_refuses_what_no_installed_plugin_registered(tmp_path: Path) -> None:
    from synthlearn.arms.local import LocalConfig, train_local_model

    request, site_file, _ = _request(_sends_nothing, None, tmp_path)
    with pytest.raises(SynthlearnError, match="is not registered by any synthlearn plugin "
                                              "installed on this node"):
        run_task_request(request, None, site_file, load_plugins())
    request, site_file, _ = _request(train_local_model, LocalConfig(), tmp_path)
    plugins = load_plugins()
    cases = [
        ({"site": 2}, "task request for site 2, this node holds site 0"),
        ({"version": 2}, "this node reads 'synthlearn-task' version 1"),
        ({"task": {**request["task"], "fn": "os:system"}}, "'os:system' is not registered"),
        ({"task": {**request["task"], "config": {"epochs": 3}}},
         "does not fit LocalConfig"),
        ({"env": {**request["env"], "num_classes": 5}},
         "this site's data has num_classes 2, the server's recipe expects 5"),
        ({"env": {**request["env"], "model": {"kind": "model", "use": "nope"}}},
         "env.model.use: unknown model 'nope'"),
        ({"env": {**request["env"], "model": {**request["env"]["model"],
                                              "params": {"arch": 3}}}},
         "env.model.params.arch"),
        ({"env": {**request["env"], "seed": -1}}, "seed -1 is not an integer"),
        ({"env": {**request["env"], "model": {"kind": "filter", "use": "near-copy"}}},
         "task request model is of kind 'filter', not a model"),
        ({"env": {**request["env"], "model": {"kind": "model", "chain": [
            request["env"]["model"], request["env"]["model"]]}}},
         "env.model: takes one model"),
        ({"env": {**request["env"], "slots": {"filter": {"kind": "filter", "chain": []}}}},
         "env.filter: a list of 0; give 1 to 8 filters"),
    ]
    for change, message in cases:
        with pytest.raises(SynthlearnError) as failed:
            run_task_request({**request, **change}, None, site_file, plugins)
        assert message in str(failed.value) and "\n" not in str(failed.value), change
