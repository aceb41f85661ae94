"""The ``synthlearn`` command in a test: in this process (fast) or in a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CliResult", "in_process_cli", "run_cli"]


@dataclass(frozen=True)
class CliResult:
    """What a command printed and its exit status (like ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run the ``synthlearn`` command in a fresh process (as a user would): about 3 s
    of importing torch each, so only where the process boundary is under test (entry
    points, exit status, signals). The environment keeps no ``SYNTHLEARN_*`` variable
    but those in ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHLEARN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "synthlearn.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)


def in_process_cli(capture: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """The generator behind the ``cli`` fixture: yields ``call(*args, env=, cwd=)``,
    which runs ``synthlearn.cli.main`` in this process, as :func:`run_cli` does in a
    fresh one. The environment has no ``SYNTHLEARN_*`` variable but those in ``env``;
    ``env["PYTHONPATH"]`` entries go in front of ``sys.path``; all of it (and ``cwd``)
    holds for that call only, and modules imported from those entries are forgotten
    afterwards, so the next call (or test) sees an environment without them."""
    from synthlearn.cli import main as cli_main

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
            capture.readouterr()
            try:
                code = cli_main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
            out, err = capture.readouterr()
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
