"""Running a whole recipe in this process, with plugins under test registered."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synthlearn.components import RegisteredComponent
from synthlearn.execution.run import Run
from synthlearn.loading.manager import PluginSet, load_plugins
from synthlearn.recipe import Recipe, check_recipe

__all__ = ["RunResult", "check_in_process", "installed", "run_recipe"]


class RunResult(dict):
    """The parsed ``metrics.json`` of a run (a dict), with the run directory as
    ``run_dir`` (``report.md``, figures, ``artifacts/``)."""

    run_dir: Path


def _with_output(recipe: dict[str, Any], folder: Path) -> dict[str, Any]:
    data = copy.deepcopy(recipe)
    data.setdefault("output", {"dir": str(folder / "runs"), "cache": str(folder / "cache")})
    return data


def check_in_process(recipe: dict[str, Any], plugins: Iterable[object] = (),
                     tmp_path: Path | str | None = None, *, autoload: bool = True
                     ) -> tuple[Recipe, PluginSet]:
    """Load the plugins (the installed ones unless ``autoload=False``, plus the given
    modules or objects) and check ``recipe`` as ``synthlearn validate`` does. Raises
    ``PluginError`` for a broken plugin and ``RecipeError`` (every problem, with its
    YAML path) for a bad recipe."""
    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(
        prefix="synthlearn-test-"))
    loaded = load_plugins(list(plugins), autoload=autoload)
    loaded.raise_problems()
    return check_recipe(_with_output(recipe, folder), loaded, recipe_dir=folder), loaded


def run_recipe(recipe: dict[str, Any], plugins: Iterable[object] = (),
               tmp_path: Path | str | None = None, *, autoload: bool = True,
               quiet: bool = True) -> RunResult:
    """Run ``recipe`` (a dict, e.g. ``small_recipe(arms=[...])``) in this process, as
    ``synthlearn run`` would, and return its parsed ``metrics.json``.

    ``plugins`` are modules or objects with ``@hookimpl`` functions, registered beside
    the installed plugins (``autoload=False``: beside the core's built-ins only), so a
    plugin is tested without installing it. Without an ``output`` key, the run directory
    and the site cache go under ``tmp_path`` (a fresh temporary folder when None).
    Errors are raised as they would reach the command: ``RecipeError``, ``PluginError``,
    ``SynthlearnError`` (a site, the data), or the plugin's own exception."""
    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(
        prefix="synthlearn-test-"))
    checked, loaded = check_in_process(recipe, plugins, folder, autoload=autoload)
    run_dir = Run(checked, loaded, quiet=quiet).execute()
    result = RunResult(json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")))
    result.run_dir = run_dir
    return result


def installed(kind: str, name: str) -> RegisteredComponent:
    """The installed component ``name`` of ``kind`` as the plugin manager found it
    through the entry points (``.distribution``, ``.plugin``, ``.spec``: its
    ``ComponentSpec``): a test that the plugin's entry point registers what it should.
    Raises ``AssertionError`` listing what is installed when it is not there, or naming
    the problem when a plugin is broken."""
    loaded = load_plugins()
    found = loaded.get(kind, name)
    if found is None:
        raise AssertionError(f"{kind} {name!r} is not installed; installed: "
                             f"{loaded.describe_names(kind)}"
                             + (f"; problems: {loaded.problems}" if loaded.problems else ""))
    return found
