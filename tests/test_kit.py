"""synthlearn.testing's fixtures, in-process runs and arm contexts."""

from __future__ import annotations

import types
from pathlib import Path

import attrs
import pytest
import torch.nn as nn
from synthlearn import ComponentSpec, PluginError, RecipeError, hookimpl
from synthlearn.arms.context import ArmContext
from synthlearn.data.types import Dataset
from synthlearn.loading import builtin
from synthlearn.loading.manager import IN_PROCESS, load_plugins
from synthlearn.models.training import TrainSettings
from synthlearn.sitework.sites import Site
from synthlearn.testing import learning_recipe, make_arm_context, offer, run_recipe, small_recipe


@attrs.define(frozen=True)
class LinearConfig:
    epochs: int = 1


class LinearModel:
    """One linear layer over the pixels: the smallest downstream model."""

    def __init__(self, config: LinearConfig) -> None:
        self.training = TrainSettings(epochs=config.epochs, batch_size=32, device="cpu")

    def build(self, in_chans: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size[0] * image_size[1],
                                                     num_classes))

    def describe(self) -> dict[str, str]:
        return {"arch": "linear"}


class LinearPlugin:
    """A plugin object (not a module) registering the ``linear`` model."""

    @hookimpl
    def synthlearn_register_models(self) -> list[ComponentSpec]:
        return [ComponentSpec("linear", LinearConfig, LinearModel, "one linear layer")]


def test_fixtures_come_from_the_kit(request: pytest.FixtureRequest, tiny_dataset: Dataset,
                                    tiny_sites: list[Site], tiny_recipe: dict) -> None:
    assert request.config.pluginmanager.has_plugin("synthlearn")  # the pytest11 entry point
    assert tiny_dataset.image_size == (16, 16) and tiny_dataset.num_classes == 2
    assert len(tiny_dataset.train) == 120 and tiny_dataset.attributes
    assert [s.id for s in tiny_sites] == [0, 1, 2]
    assert sum(len(s.data) for s in tiny_sites) == 120
    assert tiny_recipe == small_recipe() and tiny_recipe is not small_recipe()


def test_run_recipe_runs_an_uninstalled_plugin_object_in_process(tmp_path: Path) -> None:
    recipe = small_recipe(model={"use": "linear", "params": {"epochs": 2}},
                          arms=[{"use": "local"}])
    metrics = run_recipe(recipe, plugins=[LinearPlugin()], tmp_path=tmp_path)
    assert metrics["model"] == {"use": "linear", "arch": "linear"}
    arm = metrics["arms"][0]
    assert arm["name"] == "local" and 0.0 <= arm["metrics"]["accuracy"] <= 1.0
    assert arm["metrics"]["bytes_to_server"] > 0
    assert metrics.run_dir.parent == tmp_path / "runs"
    assert (metrics.run_dir / "report.md").is_file()


def test_run_recipe_takes_a_module_and_reports_a_bad_recipe(tmp_path: Path) -> None:
    module = types.ModuleType("my_models")
    module.synthlearn_register_models = LinearPlugin.synthlearn_register_models.__get__(
        LinearPlugin())
    with pytest.raises(RecipeError, match=r"\$\.model\.params\.epochs: expected int"):
        run_recipe(small_recipe(model={"use": "linear", "params": {"epochs": "two"}}),
                   plugins=[module], tmp_path=tmp_path)
    with pytest.raises(RecipeError, match=r"unknown model 'linear'"):  # not registered
        run_recipe(small_recipe(model={"use": "linear"}), tmp_path=tmp_path)


def test_run_recipe_stops_on_a_broken_plugin_object_naming_it(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def synthlearn_register_models(self) -> list[object]:
            return ["not a spec"]

    with pytest.raises(PluginError, match=f"plugin 'Broken' from distribution {IN_PROCESS}"):
        run_recipe(small_recipe(), plugins=[Broken()], tmp_path=tmp_path)


def test_offer_names_a_component_object_for_a_recipe(tmp_path: Path) -> None:
    model = LinearModel(LinearConfig(epochs=1))
    metrics = run_recipe(small_recipe(model={"use": "mine"}, arms=[{"use": "centralized"}]),
                         plugins=[offer("model", "mine", model)], tmp_path=tmp_path,
                         autoload=False)
    assert metrics["model"]["use"] == "mine" and metrics["model"]["arch"] == "linear"
    with pytest.raises(ValueError, match="unknown kind 'pooling'"):
        offer("pooling", "x", model)


def test_extra_plugins_already_registered_are_not_registered_twice() -> None:
    loaded = load_plugins([builtin], autoload=False)
    assert [p.name for p in loaded.plugins] == ["builtin"] and not loaded.problems
    twice = load_plugins([LinearPlugin(), LinearPlugin()], autoload=False)
    assert twice.problems and "model 'linear' is registered twice" in twice.problems[0]


def test_make_arm_context_is_a_real_context(tmp_path: Path) -> None:
    ctx = make_arm_context("local", tmp_path=tmp_path, cache=True)
    assert isinstance(ctx, ArmContext) and ctx.name == "local"
    assert [len(s.data) for s in ctx.sites] == [60, 60, 60]
    assert ctx.num_classes == 2 and ctx.image_size == (16, 16)
    result = ctx.arm_object.run(ctx)
    assert sorted(result.site_models) == [0, 1, 2]
    assert ctx.ledger.bytes_to_server > 0 and len(ctx.ledger.per_site) == 3
    scores = ctx.evaluate(result.site_models[0])
    assert set(scores) >= {"accuracy", "auc"} and 0.0 <= scores["accuracy"] <= 1.0
    again = make_arm_context("local", tmp_path=tmp_path, cache=True)  # site outputs cached
    again.arm_object.run(again)
    assert again.ledger.cached_sites == 3


def test_make_arm_context_refuses_a_bad_arm_like_validate() -> None:
    with pytest.raises(RecipeError, match=r"\$\.arms\[0\]\.use: unknown arm 'nope'"):
        make_arm_context("nope")


def test_learning_recipe_learns_where_small_recipe_only_runs(tmp_path: Path) -> None:
    """The recipe for asserting that a component helps: its centralized model is well
    above chance on accuracy and AUC, and every site's own model above chance too."""
    metrics = run_recipe(learning_recipe(), tmp_path=tmp_path)
    arms = {a["name"]: a["metrics"] for a in metrics["arms"]}
    assert arms["centralized"]["accuracy"] > 0.75 and arms["centralized"]["auc"] > 0.8
    assert arms["local"]["accuracy"] > 0.6 and arms["local"]["auc"] > 0.65
