"""Shared test helpers. The fixtures (``cli``, ``write_recipe``, ``tiny_dataset``,
``tiny_sites``, ``tiny_recipe``) and the helpers re-exported here come from
``synthlearn.testing``, the kit plugin authors use (a pytest plugin registered through
the ``pytest11`` entry point); this file adds only what is about this repository.

The suite is fast by design (``make test`` runs it without the ``slow`` marker): unit
tests use tiny models and images, end-to-end runs use :func:`small_recipe` (timm's
``test_resnet`` on 16x16 phantom images), expensive runs are shared through module-scoped
fixtures, and the CLI is called in-process (the ``cli`` fixture) unless the process
boundary is under test (entry points, exit status of the real command, signals:
:func:`run_cli`). Torch runs on one thread unless ``OMP_NUM_THREADS`` is set (the kit's
pytest plugin sees to it)."""

from __future__ import annotations

from pathlib import Path

from synthlearn.testing import CliResult, run_cli, small_recipe, write_distribution

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

__all__ = ["REPO", "SHARED_DATA", "CliResult", "run_cli", "small_recipe",
           "write_distribution"]
