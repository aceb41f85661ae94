"""Plugin discovery through real entry points, broken plugins, clashes, env switches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli, small_recipe, write_distribution
from synthlearn.loading.manager import load_plugins

EXAMPLE = (REPO / "templates" / "plugin" / "synthlearn_example" / "plugin.py").read_text()

BROKEN = "import this_module_does_not_exist_anywhere\n"

CLASH = """
import attrs
from synthlearn import ComponentSpec, hookimpl

@attrs.define(frozen=True)
class Cfg:
    pass

@hookimpl
def synthlearn_register_datasets():
    return [ComponentSpec("phantom", Cfg, lambda c: None, "a second phantom")]
"""

BAD_HOOK = """
from synthlearn import hookimpl

@hookimpl
def synthlearn_register_generatorz():
    return []
"""


def test_entry_point_plugin_is_listed_with_its_distribution(tmp_path: Path) -> None:
    """In a fresh process: entry points found on PYTHONPATH as pip-installed ones are."""
    site = write_distribution(tmp_path / "site", "acme-models", "acme_models_a", EXAMPLE, "acme")
    template = REPO / "templates" / "plugin"  # the example's generator module lives there
    result = run_cli("plugins", "--json", env={"PYTHONPATH": f"{site}{os.pathsep}{template}"})
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    names = {p["name"]: p for p in listing["plugins"]}
    assert names["acme"]["distribution"] == "acme-models"
    assert names["acme"]["version"] == "1.0"
    assert names["acme"]["ok"] is True
    models = {m["name"]: m["distribution"] for m in listing["components"]["model"]}
    assert models == {"timm": "synthlearn", "tiny_cnn": "acme-models"}
    datasets = {d["name"] for d in listing["components"]["dataset"]}
    assert {"phantom", "digits", "medmnist", "imagefolder"} <= datasets


def test_third_party_component_used_by_a_recipe(tmp_path: Path, write_recipe, cli) -> None:
    """The swap-without-forking path: a distribution the core has never heard of
    provides the model, and a recipe runs end to end with it."""
    site = write_distribution(tmp_path / "site", "acme-models", "acme_models_b", EXAMPLE, "acme")
    recipe = small_recipe(model={"use": "tiny_cnn", "params": {"width": 8, "epochs": 2}},
                          arms=[{"use": "local"}])
    path = write_recipe(recipe)
    out = tmp_path / "run"
    result = cli("run", str(path), "--out", str(out), "--quiet", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["arch"] == "tiny_cnn"
    assert 0.0 <= metrics["arms"][0]["metrics"]["accuracy"] <= 1.0
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["model"] == {"use": "tiny_cnn", "params": {"width": 8, "epochs": 2,
                                                            "batch_size": 64, "lr": 0.002,
                                                            "device": "auto"}}
    # without the distribution on the path, the same recipe names what is installed
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: $.model.use: unknown model 'tiny_cnn'; "
                                     "installed: timm (synthlearn)")


def test_broken_plugin_is_listed_as_broken_and_stops_a_run(tmp_path: Path, write_recipe,
                                                           cli) -> None:
    site = write_distribution(tmp_path / "site", "acme-broken", "acme_broken", BROKEN)
    env = {"PYTHONPATH": str(site)}
    listing = cli("plugins", env=env)
    assert listing.returncode == 1
    assert "builtin" in listing.stdout and "phantom" in listing.stdout  # healthy ones listed
    assert "BROKEN: failed to import: ModuleNotFoundError" in listing.stdout
    result = cli("validate", str(write_recipe(small_recipe())), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "acme-broken" in lines[0] and "this_module_does_not_exist_anywhere" in lines[0]
    assert "Traceback" not in result.stderr


def test_blocking_a_broken_plugin_lets_the_run_go_on(tmp_path: Path, write_recipe, cli) -> None:
    site = write_distribution(tmp_path / "site", "acme-broken", "acme_broken2", BROKEN, "bad")
    env = {"PYTHONPATH": str(site), "SYNTHLEARN_BLOCK_PLUGINS": "bad"}
    result = cli("validate", str(write_recipe(small_recipe())), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok (phantom: 180 training images over 3 sites")


def test_duplicate_component_names_fail_naming_both_distributions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = write_distribution(tmp_path / "site", "acme-clash", "acme_clash", CLASH)
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins()
    assert plugins.problems == [
        "dataset 'phantom' is registered twice: by distribution synthlearn (plugin builtin) "
        "and by distribution acme-clash (plugin acme_clash); uninstall one or block it with "
        "SYNTHLEARN_BLOCK_PLUGINS"
    ]
    assert plugins.get("dataset", "phantom").distribution == "synthlearn"


def test_unknown_hook_marks_the_plugin_broken(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    site = write_distribution(tmp_path / "site", "acme-typo", "acme_typo", BAD_HOOK)
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins()
    bad = [p for p in plugins.plugins if p.name == "acme_typo"]
    assert len(bad) == 1 and not bad[0].ok
    assert "synthlearn_register_generatorz" in bad[0].error
    assert any("acme-typo" in problem for problem in plugins.problems)


def test_autoload_off_and_explicit_plugin_modules(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    site = write_distribution(tmp_path / "site", "acme-models", "acme_models_c", EXAMPLE)
    monkeypatch.syspath_prepend(str(site))
    assert load_plugins().get("model", "tiny_cnn") is not None
    monkeypatch.setenv("SYNTHLEARN_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins = load_plugins()
    assert plugins.get("model", "tiny_cnn") is None
    assert [p.name for p in plugins.plugins] == ["builtin"]
    monkeypatch.setenv("SYNTHLEARN_PLUGINS", "acme_models_c")
    comp = load_plugins().get("model", "tiny_cnn")
    assert comp is not None and comp.distribution == "SYNTHLEARN_PLUGINS module"


def test_registration_hook_returning_garbage_is_reported(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    source = """
from synthlearn import hookimpl

@hookimpl
def synthlearn_register_models():
    return ["not a spec"]
"""
    site = write_distribution(tmp_path / "site", "acme-garbage", "acme_garbage", source)
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins()
    assert any("acme-garbage" in p and "expected synthlearn.ComponentSpec" in p
               for p in plugins.problems)
