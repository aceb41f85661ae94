"""End-to-end runs: the run directory, metrics.json contract, determinism, the cache,
and what a failed run leaves behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED_DATA, run_cli, small_recipe, write_distribution
from synthlearn.execution.run import Run
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe
from synthlearn.sitework.exchange import Payload

CONTRACT = {"accuracy", "balanced_accuracy", "auc", "bytes_to_server", "bytes_to_sites",
            "wall_s"}


def run_recipe(data: dict, out: Path, **kw) -> dict:
    plugins = load_plugins()
    Run(check_recipe(data, plugins), plugins, quiet=True).execute(str(out), **kw)
    return json.loads((out / "metrics.json").read_text())


def with_output(data: dict, tmp_path: Path, cache: str | None = "cache") -> dict:
    data = dict(data)
    data["output"] = {"dir": str(tmp_path / "runs"),
                      "cache": None if cache is None else str(tmp_path / cache)}
    return data


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The small recipe run once without a cache: its metrics and its run directory."""
    tmp = tmp_path_factory.mktemp("quick")
    return run_recipe(with_output(small_recipe(), tmp, cache=None), tmp / "run"), tmp / "run"


@pytest.fixture(scope="module")
def cached_local(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, dict]:
    """The small recipe's local arm run once with a cache: the recipe (its cache in the
    returned folder), the folder, and the run's metrics."""
    tmp = tmp_path_factory.mktemp("cached")
    data = with_output(small_recipe(arms=["local"]), tmp)
    return data, tmp, run_recipe(data, tmp / "first")


def test_quick_run_writes_the_contract(quick: tuple[dict, Path]) -> None:
    metrics, run_dir = quick
    names = {p.name for p in run_dir.iterdir()}
    assert {"metrics.json", "report.md", "recipe.yaml", "samples.png",
            "class_balance.png"} <= names
    assert metrics["name"] == "small" and metrics["seed"] == 0
    central, local = metrics["arms"]
    assert (central["name"], central["use"], central["private"]) == ("centralized",
                                                                     "centralized", False)
    assert (local["name"], local["private"]) == ("local", True)
    for arm in metrics["arms"]:
        assert set(arm["metrics"]) >= CONTRACT
        assert arm["attacks"] == {}
        assert 0.0 <= arm["metrics"]["accuracy"] <= 1.0
    # centralized ships the raw images: at least the pixel bytes of all 180 16x16 images
    assert central["metrics"]["bytes_to_server"] >= 180 * 16 * 16
    assert central["metrics"]["bytes_to_sites"] == 0
    # local ships three sets of weights, reports each site and their mean
    assert len(local["sites"]) == 3
    mean = sum(s["accuracy"] for s in local["sites"]) / 3
    assert local["metrics"]["accuracy"] == pytest.approx(mean)
    assert sum(s["n"] for s in metrics["sites"]) == 180
    assert [sum(s["class_counts"]) for s in metrics["sites"]] == [s["n"] for s in
                                                                  metrics["sites"]]
    report = (run_dir / "report.md").read_text()
    assert "not private" in report.lower()
    # nothing but the finished directory is left in the parent
    assert sorted(p.name for p in run_dir.parent.iterdir() if p.name.startswith(".")) == []


def test_same_recipe_same_seed_same_numbers(quick: tuple[dict, Path], tmp_path: Path) -> None:
    a = quick[0]
    b = run_recipe(with_output(small_recipe(), tmp_path, cache=None), tmp_path / "b")
    strip = [{k: v for k, v in arm["metrics"].items() if k != "wall_s"} for arm in a["arms"]]
    assert strip == [{k: v for k, v in arm["metrics"].items() if k != "wall_s"}
                     for arm in b["arms"]]
    assert [arm["sites"] for arm in a["arms"]] == [arm["sites"] for arm in b["arms"]]
    c = run_recipe(with_output(small_recipe(seed=1), tmp_path, cache=None), tmp_path / "c")
    assert c["sites"] != a["sites"] or c["arms"][1]["sites"] != a["arms"][1]["sites"]


def test_cache_reuses_finished_site_work(cached_local: tuple[dict, Path, dict],
                                        tmp_path: Path) -> None:
    data, cached, first = cached_local
    # work on a copy of the cache: the next test corrupts its own copy
    data = with_output(data, tmp_path)
    shutil.copytree(cached / "cache", tmp_path / "cache")
    assert first["arms"][0]["cached_sites"] == 0
    second = run_recipe(data, tmp_path / "second")
    assert second["arms"][0]["cached_sites"] == 3
    assert second["arms"][0]["sites"] == first["arms"][0]["sites"]
    assert second["arms"][0]["metrics"]["bytes_to_server"] == \
        first["arms"][0]["metrics"]["bytes_to_server"]
    # a different model config is different site work: nothing reused
    changed = dict(data, model={"use": "timm", "params": {"arch": "test_resnet", "epochs": 1,
                                                          "device": "cpu"}})
    third = run_recipe(changed, tmp_path / "third")
    assert third["arms"][0]["cached_sites"] == 0
    # cache entries are safetensors payloads, readable without unpickling
    blobs = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(blobs) == 6
    payload = Payload.from_bytes(blobs[0].read_bytes(), str(blobs[0]))
    assert payload.meta["n"] > 0 and payload.tensors


def test_corrupt_cache_entry_is_recomputed(cached_local: tuple[dict, Path, dict],
                                          tmp_path: Path) -> None:
    data, cached, first = cached_local
    data = with_output(data, tmp_path)
    shutil.copytree(cached / "cache", tmp_path / "cache")
    blob = sorted((tmp_path / "cache").rglob("*.safetensors"))[0]
    blob.write_bytes(b"garbage")
    second = run_recipe(data, tmp_path / "second")
    assert second["arms"][0]["cached_sites"] == 2
    assert second["arms"][0]["sites"] == first["arms"][0]["sites"]


FAILING_ARM = """
import attrs
from synthlearn import ComponentSpec, SynthlearnError, hookimpl

@attrs.define(frozen=True)
class Cfg:
    pass

class Failing:
    private = True
    def __init__(self, config):
        pass
    def run(self, ctx):
        raise SynthlearnError("site 1 has too few images for this arm", where="$.arms[1]")

@hookimpl
def synthlearn_register_arms():
    return [ComponentSpec("failing", Cfg, Failing, "always fails")]
"""


def test_failed_run_leaves_no_run_directory(tmp_path: Path, write_recipe, cli) -> None:
    site = write_distribution(tmp_path / "site", "acme-fail", "acme_fail", FAILING_ARM)
    path = write_recipe(small_recipe(arms=["centralized", "failing"]))
    out = tmp_path / "runs" / "x"
    result = cli("run", str(path), "--out", str(out), "--quiet",
                     env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: $.arms[1]: site 1 has too few images for this arm"
    assert not out.exists()
    assert list((tmp_path / "runs").iterdir()) == []


def test_out_directory_is_never_overwritten(tmp_path: Path, write_recipe) -> None:
    """In a fresh process: the installed command's exit status and its one line."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("run", str(write_recipe(small_recipe())), "--out", str(out), "--quiet")
    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_run_progress_and_default_directory(tmp_path: Path, write_recipe, cli) -> None:
    path = write_recipe(small_recipe(arms=["centralized"]))
    result = cli("run", str(path), "--set", "model.params.epochs=1")
    assert result.returncode == 0, result.stderr
    assert "[arm 1/1] centralized" in result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("small-")
    assert "epochs: 1" in (run_dir / "recipe.yaml").read_text()
    quiet = cli("run", str(path), "--quiet", "--set", "model.params.epochs=1")
    assert quiet.returncode == 0 and quiet.stderr == ""


SITE_FAILS = """
import attrs
from synthlearn import ComponentSpec, SynthlearnError, hookimpl
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import SiteTask

@attrs.define(frozen=True)
class Cfg:
    pass

def work(site, config, inbound, env):
    if site.id == 1:
        raise SynthlearnError(f"only {len(site.data)} images, too few for this arm")
    return Payload(meta={"n": len(site.data)})

class Arm:
    private = True
    def __init__(self, config):
        self.config = config
    def run(self, ctx):
        ctx.run_sites(SiteTask("work", work, self.config, shares="nothing"))

@hookimpl
def synthlearn_register_arms():
    return [ComponentSpec("site_fails", Cfg, Arm, "fails at site 1")]
"""


def test_site_failure_names_arm_site_and_task(tmp_path: Path, write_recipe, cli) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "acme_site_fails.py").write_text(SITE_FAILS)
    path = write_recipe(small_recipe(arms=["site_fails"]))
    result = cli("run", str(path), "--quiet",
                     env={"PYTHONPATH": str(tmp_path / "mods"),
                          "SYNTHLEARN_PLUGINS": "acme_site_fails"})
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: arm site_fails, site 1, task work: "
                                     "only 60 images, too few for this arm")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
def test_pneumonia_end_to_end_learns_the_task(tmp_path: Path) -> None:
    """Real data, real model (about 2 CPU minutes; ``make test-all``): centralized and
    FedAvg learn PneumoniaMNIST. Measured (one thread): test AUC 0.961 and 0.958, test
    accuracy 0.82 and 0.82 (the test split is shifted), validation accuracy 0.98."""
    if not (SHARED_DATA / "pneumoniamnist.npz").is_file():
        pytest.skip(f"shared PneumoniaMNIST file not present in {SHARED_DATA}")
    recipe = small_recipe(
        name="pneumonia",
        data={"use": "medmnist", "params": {"subset": "pneumoniamnist",
                                            "root": str(SHARED_DATA)}},
        model={"use": "timm", "params": {"arch": "resnet10t", "epochs": 3, "batch_size": 64,
                                         "device": "cpu"}},
        arms=[{"use": "centralized"},
              {"use": "fedavg", "params": {"rounds": 3, "local_epochs": 1}}])
    metrics = run_recipe(with_output(recipe, tmp_path, cache=None), tmp_path / "run")
    assert sum(s["n"] for s in metrics["sites"]) == 2428
    central, fedavg = (arm["metrics"] for arm in metrics["arms"])
    for arm in (central, fedavg):
        assert arm["auc"] > 0.93 and arm["accuracy"] > 0.75  # chance: 0.5 and 0.5
    assert abs(central["auc"] - fedavg["auc"]) < 0.03
    assert metrics["arms"][0]["validation"]["accuracy"] > 0.93
