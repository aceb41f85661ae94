"""Tests of the example plugin with synthlearn's test kit, ``synthlearn.testing``.

Run them with ``pytest tests`` after ``pip install -e .`` (the kit's fixtures and
helpers come with synthlearn). Copy the pattern for your own component: its kind's
conformance check (``check_model``, ``check_generator``, ``check_arm``, ...), then a
whole recipe run in this process with your plugin registered, then the errors your
users can cause."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthlearn import RecipeError
from synthlearn.testing import check_model, run_recipe, small_recipe
from synthlearn_example import plugin
from synthlearn_example.plugin import TinyCNN, TinyCNNConfig


def test_tiny_cnn_conforms_to_the_model_contract() -> None:
    check_model(TinyCNN(TinyCNNConfig(width=4)))


def test_a_recipe_runs_with_the_plugin(tmp_path: Path) -> None:
    recipe = small_recipe(model={"use": "tiny_cnn", "params": {"width": 4, "epochs": 2,
                                                              "device": "cpu"}})
    metrics = run_recipe(recipe, plugins=[plugin], tmp_path=tmp_path)
    assert metrics["model"] == {"use": "tiny_cnn", "arch": "tiny_cnn", "width": 4}
    assert [arm["name"] for arm in metrics["arms"]] == ["centralized", "local"]
    for arm in metrics["arms"]:
        assert 0.0 <= arm["metrics"]["accuracy"] <= 1.0
    assert (metrics.run_dir / "report.md").is_file()


def test_bad_params_are_refused_with_their_yaml_path(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"\$\.model\.params: width must be positive"):
        run_recipe(small_recipe(model={"use": "tiny_cnn", "params": {"width": 0}}),
                   plugins=[plugin], tmp_path=tmp_path)
    with pytest.raises(RecipeError, match=r"\$\.model\.params\.epochs: expected int"):
        run_recipe(small_recipe(model={"use": "tiny_cnn", "params": {"epochs": "3"}}),
                   plugins=[plugin], tmp_path=tmp_path)
