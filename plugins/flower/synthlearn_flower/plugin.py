"""The hook that registers the ``flower`` runner with synthlearn."""

from __future__ import annotations

from typing import Any

from synthlearn import ComponentSpec, hookimpl

from synthlearn_flower.config import FlowerConfig


def make_runner(config: FlowerConfig) -> Any:
    from synthlearn_flower.runner import FlowerRunner  # imports Flower on first use

    return FlowerRunner(config)


@hookimpl
def synthlearn_register_runners() -> list[ComponentSpec]:
    """The ``flower`` runner: its config class, factory and one-line summary."""
    return [ComponentSpec("flower", FlowerConfig, make_runner,
                          "site work on Flower SuperNodes, one per hospital, through a "
                          "SuperLink")]
