"""metrics.json's typed classes and JSON Schema, the recipe schema, and the small
validator that checks documents against them (issue 17)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from synthlearn.execution.results import SCHEMA_VERSION, RunMetrics, metrics_schema
from synthlearn.loading.manager import load_plugins
from synthlearn.schema.check import validate
from synthlearn.schema.from_attrs import from_json, to_json
from synthlearn.schema.recipe_schema import recipe_schema
from synthlearn.testing import run_recipe, small_recipe

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "templates" / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real run's metrics.json: a per-site arm audited by the loss attack (when the
    mia plugin is installed) beside a pooled arm."""
    attacks = ([{"use": "loss"}] if "loss" in load_plugins().components["attack"] else [])
    return dict(run_recipe(small_recipe(attacks=attacks),
                           tmp_path=tmp_path_factory.mktemp("schema")))


@pytest.fixture(scope="module")
def plugins() -> Any:
    loaded = load_plugins()
    loaded.raise_problems()
    return loaded


@pytest.fixture(scope="module")
def recipes(plugins: Any) -> dict[str, Any]:
    return recipe_schema(plugins)


# --- metrics.json -------------------------------------------------------------------------


def test_a_real_metrics_file_is_versioned_and_valid(metrics: dict[str, Any]) -> None:
    assert metrics["schema_version"] == SCHEMA_VERSION == 1
    assert validate(metrics_schema(), metrics) == []


def test_the_typed_classes_read_back_what_they_wrote(metrics: dict[str, Any]) -> None:
    typed = from_json(RunMetrics, metrics)
    assert typed.arms[0].metrics.bytes_to_server == metrics["arms"][0]["metrics"][
        "bytes_to_server"]
    assert to_json(typed) == metrics


def test_keys_the_report_and_benchmarks_read_are_kept(metrics: dict[str, Any]) -> None:
    assert {"name", "seed", "synthlearn_version", "warnings", "dataset", "model", "sites",
            "arms", "wall_s"} <= set(metrics)
    arm = metrics["arms"][1]
    assert arm["use"] == "local" and arm["sites"][0]["site"] == 0
    assert {"accuracy", "auc", "balanced_accuracy", "bytes_to_server", "bytes_to_sites",
            "wall_s"} <= set(arm["metrics"])
    assert arm["curve"][-1]["round"] is None
    assert metrics["model"]["use"] == "timm" and "arch" in metrics["model"]
    if arm["attacks"]:
        loss = arm["attacks"]["loss"]
        assert {"auc", "tpr_at_fpr_0.01", "control_auc", "sites"} <= set(loss)


@pytest.mark.parametrize("break_it, where", [
    (lambda m: m.pop("arms"), "$: missing 'arms'"),
    (lambda m: m["arms"][0]["metrics"].update(accuracy="high"), "$.arms[0].metrics.accuracy"),
    (lambda m: m["arms"][0].update(extra_key=1), "$.arms[0].extra_key: unknown key"),
    (lambda m: m["dataset"].update(n_train=1.5), "$.dataset.n_train"),
    (lambda m: m["arms"][0]["site_bytes"].append({"site": 9}), "missing 'bytes_to_server'"),
    (lambda m: m.update(schema_version="1"), "$.schema_version"),
])
def test_a_broken_metrics_file_is_refused_at_its_path(metrics: dict[str, Any], break_it: Any,
                                                       where: str) -> None:
    bad = copy.deepcopy(metrics)
    break_it(bad)
    problems = validate(metrics_schema(), bad)
    assert any(where in p for p in problems), problems


def test_open_objects_stay_open(metrics: dict[str, Any]) -> None:
    """An arm's details, the model's describe() and an attack's own keys are plugins'."""
    extended = copy.deepcopy(metrics)
    extended["arms"][0]["details"]["anything"] = {"a": [1]}
    extended["model"]["layers"] = 3
    assert validate(metrics_schema(), extended) == []


def test_schema_metrics_command_prints_the_schema(cli: Any) -> None:
    result = cli("schema", "metrics")
    assert result.returncode == 0
    printed = json.loads(result.stdout)
    assert printed == metrics_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    version = printed["properties"]["schema_version"]
    assert version["type"] == "integer" and "changes meaning" in version["description"]


# --- recipes ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_template_is_valid(recipes: dict[str, Any], template: Path) -> None:
    assert validate(recipes, yaml.safe_load(template.read_text(encoding="utf-8"))) == []


def _quickstart() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "templates/recipes/quickstart.yaml").read_text("utf-8"))


def test_a_misspelled_plugin_param_is_refused(recipes: dict[str, Any], plugins: Any) -> None:
    if "gan" not in plugins.components["generator"]:
        pytest.skip("the gan plugin is not installed")
    recipe = _quickstart()
    recipe["arms"].append({"use": "synthetic", "generator": {"use": "gan",
                                                             "params": {"stepz": 30}}})
    problems = validate(recipes, recipe)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"$.arms[{len(recipe['arms']) - 1}].generator.params.stepz: "
                                  "unknown key (known: steps,")


def test_an_unknown_use_and_a_bad_type_are_refused(recipes: dict[str, Any]) -> None:
    recipe = _quickstart()
    recipe["arms"].append({"use": "centralised"})
    recipe["model"] = {"use": "timm", "params": {"epochs": "ten"}}
    problems = validate(recipes, recipe)
    assert any(p.startswith(f"$.arms[{len(recipe['arms']) - 1}].use: 'centralised' is not "
                            "one of") for p in problems), problems
    assert "$.model.params.epochs: expected integer, got 'ten'" in problems


def test_a_slot_the_arm_does_not_declare_is_refused(recipes: dict[str, Any]) -> None:
    recipe = _quickstart()
    recipe["arms"] = [{"use": "local", "generator": "gan"}]
    assert validate(recipes, recipe) == ["$.arms[0].generator: not allowed here"]


def test_a_filter_slot_takes_a_list_and_a_generator_slot_does_not(recipes: dict[str, Any],
                                                                  plugins: Any) -> None:
    if "gan" not in plugins.components["generator"]:
        pytest.skip("the gan plugin is not installed")
    recipe = _quickstart()
    recipe["arms"] = [{"use": "synthetic", "params": {"share": "samples"}, "generator": "gan",
                       "filter": ["reid", {"use": "near-copy", "params": {"quantile": 0.02}}]}]
    assert validate(recipes, recipe) == []
    recipe["arms"][0]["filter"] = []
    assert validate(recipes, recipe) != []
    recipe["arms"][0]["filter"] = "reid"
    recipe["arms"][0]["generator"] = ["gan"]
    assert validate(recipes, recipe) != []


def test_enums_defaults_and_docs_come_from_the_config_class(recipes: dict[str, Any]
                                                            ) -> None:
    timm = recipes["$defs"]["synthlearn.models.timm_model.TimmConfig"]
    assert timm["additionalProperties"] is False
    assert timm["properties"]["optimizer"]["enum"] == ["adamw", "sgd"]
    assert timm["properties"]["epochs"]["default"] == 10
    assert timm["properties"]["epochs"]["minimum"] == 1
    assert "timm.list_models()" in timm["properties"]["arch"]["description"]
    arm_uses = recipes["$defs"]["arm"]["anyOf"][0]["enum"]
    assert {"centralized", "local", "synthetic"} <= set(arm_uses)


def test_schema_recipe_command_includes_an_in_process_plugin(cli: Any, tmp_path: Path
                                                             ) -> None:
    """A plugin's params reach the schema: one loaded through SYNTHLEARN_PLUGINS."""
    (tmp_path / "schema_probe.py").write_text(
        "import attrs\nfrom synthlearn import ComponentSpec, hookimpl\n\n"
        "@attrs.define(frozen=True)\nclass ProbeConfig:\n"
        "    \"\"\"Probe params.\"\"\"\n"
        "    depth: int = attrs.field(default=2, metadata={'doc': 'how deep'})\n\n"
        "class Probe:\n    def __init__(self, config):\n        self.config = config\n\n"
        "@hookimpl\ndef synthlearn_register_runners():\n"
        "    return [ComponentSpec('probe', ProbeConfig, Probe, 'a probe runner')]\n",
        encoding="utf-8")
    result = cli("schema", "recipe", env={"SYNTHLEARN_PLUGINS": "schema_probe",
                                          "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    depth = schema["$defs"]["schema_probe.ProbeConfig"]["properties"]["depth"]
    assert depth == {"type": "integer", "description": "how deep", "default": 2}
    assert "probe" in schema["$defs"]["runner"]["anyOf"][0]["enum"]
    recipe = _quickstart()
    recipe["runner"] = {"use": "probe", "params": {"depht": 3}}
    assert validate(schema, recipe) == [
        "$.runner.params.depht: unknown key (known: depth)"]


# --- the validator itself ------------------------------------------------------------------


def test_the_validator_checks_each_keyword() -> None:
    schema = {"$defs": {"n": {"type": "integer", "minimum": 0}},
              "type": "object", "required": ["a"], "additionalProperties": False,
              "properties": {"a": {"$ref": "#/$defs/n"},
                             "b": {"type": "array", "prefixItems": [{"const": 1}],
                                   "items": {"enum": ["x"]}, "maxItems": 2},
                             "c": {"anyOf": [{"type": "null"}, {"type": "string",
                                                                "pattern": "^z"}]},
                             "d": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}}
    assert validate(schema, {"a": 0, "b": [1, "x"], "c": None, "d": 1.5}) == []
    assert validate(schema, {"a": -1, "b": [2, "y", "x"], "c": "q", "d": 2, "e": 0}) == [
        "$.a: must be >= 0, got -1",
        "$.b: at most 2 item(s), got 3",
        "$.b[0]: expected 1, got 2",
        "$.b[1]: 'y' is not one of 'x'",
        "$.c: 'q' does not match ^z",
        "$.d: matches 2 alternatives, expected exactly one",
        "$.e: unknown key (known: a, b, c, d)"]
    assert validate({"type": "integer"}, True) == ["$: expected integer, got True"]
    with pytest.raises(ValueError, match="not supported: format"):
        validate({"format": "email"}, "x")


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`synthlearn schema recipe | head`: the CLI stops quietly with 141 (128 + SIGPIPE)."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "synthlearn.cli", "schema", "recipe"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr.decode() == ""
