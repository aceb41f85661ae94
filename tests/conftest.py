"""Shared test helpers: throwaway plugin distributions, a small recipe, the CLI (in this
process with the ``cli`` fixture, or in a fresh one with ``run_cli``).

The suite is fast by design (``make test`` runs it without the ``slow`` marker): unit
tests use tiny models and images, end-to-end runs use :func:`small_recipe` (timm's
``test_resnet`` on 16x16 phantom images), expensive runs are shared through module-scoped
fixtures, and the CLI is called in-process unless the process boundary is under test
(entry points, exit status of the real command, signals). Torch runs on one thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from synthlearn.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# One thread per test process (and per process a test starts), unless OMP_NUM_THREADS says
# otherwise. The tests train tiny models, where more threads buy nothing; on a busy machine
# they cost a lot (threads spin while a peer is descheduled: 20x the CPU time measured on
# a loaded 2-core machine), and the asserted figures would depend on the core count.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


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
    """A recipe that runs in a few seconds: 180 phantom images of 16x16 over 3 sites and
    timm's ``test_resnet`` (0.37 M parameters), 2 epochs."""
    recipe = {
        "name": "small",
        "seed": 0,
        "data": {"use": "phantom", "params": {"n_train": 180, "n_test": 90, "size": 16}},
        "sites": {"count": 3, "partition": {"use": "iid"}},
        "model": {"use": "timm", "params": {"arch": "test_resnet", "epochs": 2,
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
    """Run the ``synthlearn`` command in a fresh process (as a user would): about 3 s
    of importing torch each, so only where the process boundary is under test; the
    ``cli`` fixture runs the same command in this process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHLEARN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "synthlearn.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)


@dataclass(frozen=True)
class CliResult:
    """What a command printed and its exit status (like ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """Run ``synthlearn <args>`` in this process (``synthlearn.cli.main``), as
    :func:`run_cli` does in a fresh one: the environment has no ``SYNTHLEARN_*`` variable
    but those in ``env``; ``env["PYTHONPATH"]`` entries go in front of ``sys.path``; all of
    it (and ``cwd``) holds for that call only, and modules imported from those entries are
    forgotten afterwards, so the next call (or test) sees an environment without them."""
    imported: list[str] = []

    def call(*args: object, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> CliResult:
        env = dict(env or {})
        paths = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p]
        before = set(sys.modules)
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("SYNTHLEARN_")]:
                mp.delenv(key)
            for key, value in env.items():
                mp.setenv(key, value)
            for path in reversed(paths):
                mp.syspath_prepend(path)
            if cwd is not None:
                mp.chdir(cwd)
            capsys.readouterr()
            try:
                code = cli_main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
            out, err = capsys.readouterr()
        imported.extend(_modules_under(set(sys.modules) - before, paths))
        for name in imported:
            sys.modules.pop(name, None)
        return CliResult(code, out, err)

    yield call
    for name in imported:
        sys.modules.pop(name, None)


def _modules_under(names: set[str], paths: list[str]) -> list[str]:
    """The modules in ``names`` whose file lies under one of ``paths``."""
    roots = [str(Path(p).resolve()) for p in paths]
    found = []
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None) or ""
        if any(str(Path(file).resolve()).startswith(root) for root in roots if file):
            found.append(name)
    return found
