"""Shared test helpers: throwaway plugin distributions, a small recipe, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_distribution(root: Path, dist: str, module: str, source: str,
                       entry: str | None = None, version: str = "1.0") -> Path:
    """Create an installed-looking distribution under ``root`` (a sys.path entry): the
    module file plus a ``.dist-info`` with METADATA and an entry point in the group
    ``synthlearn``. importlib.metadata finds it exactly as it finds a pip-installed one."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[synthlearn]\n{entry or module} = {module}\n", encoding="utf-8")
    return root


def small_recipe(**changes: object) -> dict:
    """A recipe that runs in seconds: small phantom images, a small timm model."""
    recipe = {
        "name": "small",
        "seed": 0,
        "data": {"use": "phantom", "params": {"n_train": 180, "n_test": 90, "size": 16}},
        "sites": {"count": 3, "partition": {"use": "iid"}},
        "model": {"use": "timm", "params": {"arch": "resnet10t", "epochs": 2,
                                             "batch_size": 32, "device": "cpu"}},
        "arms": [{"use": "centralized"}, {"use": "local"}],
    }
    recipe.update(changes)
    return recipe


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write a recipe dict as YAML (with ``output`` inside tmp_path) and return its path."""

    def write(recipe: dict, name: str = "recipe.yaml") -> Path:
        recipe = dict(recipe)
        recipe.setdefault("output", {"dir": str(tmp_path / "runs"),
                                     "cache": str(tmp_path / "cache")})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        return path

    return write


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run the ``synthlearn`` command in a fresh process (as a user would)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHLEARN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "synthlearn.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)
