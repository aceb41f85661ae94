"""The pytest plugin of ``synthlearn.testing`` (entry point ``pytest11``): fixtures for
plugin tests, and torch on one thread unless ``OMP_NUM_THREADS`` says otherwise (the
tests train tiny models, where more threads buy nothing and on a busy machine cost a
lot; figures asserted would depend on the core count)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from synthlearn.data.types import Dataset
    from synthlearn.sitework.sites import Site
    from synthlearn.testing.cli import CliResult


def _one_thread() -> None:
    """Torch on one thread (and every process a test starts) unless OMP_NUM_THREADS is
    set; done when pytest loads this plugin, before most imports of torch."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
        torch = sys.modules.get("torch")
        if torch is not None:  # imported before the variable was set
            torch.set_num_threads(1)


_one_thread()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long end-to-end check, left out of quick runs (-m 'not slow')")


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    """120 training and 60 test phantom images of 16x16 (one channel, 2 classes, with
    size/contrast/scanner attributes). Shared by the session: do not change it."""
    from synthlearn.testing.recipes import tiny_dataset as make

    return make()


@pytest.fixture(scope="session")
def tiny_sites(tiny_dataset: Dataset) -> list[Site]:
    """``tiny_dataset``'s training images over 3 sites, every class alike."""
    from synthlearn.testing.recipes import tiny_sites as make

    return make(tiny_dataset, 3)


@pytest.fixture
def tiny_recipe() -> dict[str, Any]:
    """A recipe dict that runs in seconds (``small_recipe()``); change it freely."""
    from synthlearn.testing.recipes import small_recipe

    return small_recipe()


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """``write_recipe(recipe, name="recipe.yaml")``: the recipe dict as YAML in
    ``tmp_path`` (its runs and cache there too unless it says ``output``); its path."""
    from synthlearn.testing.recipes import write_recipe_file

    def write(recipe: dict[str, Any], name: str = "recipe.yaml") -> Path:
        return write_recipe_file(recipe, tmp_path, name)

    return write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """``cli(*args, env=None, cwd=None) -> CliResult``: ``synthlearn <args>`` in this
    process, with no ``SYNTHLEARN_*`` variable but those in ``env``, and
    ``env["PYTHONPATH"]`` in front of ``sys.path`` for that call only."""
    from synthlearn.testing.cli import in_process_cli

    yield from in_process_cli(capsys)
