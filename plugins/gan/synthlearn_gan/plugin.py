"""The hook that registers the ``gan`` generator with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, hookimpl

from synthlearn_gan.config import GanConfig
from synthlearn_gan.generator import GanGenerator


@hookimpl
def synthlearn_register_generators() -> list[ComponentSpec]:
    """The ``gan`` generator: its config class, factory and one-line summary."""
    return [
        ComponentSpec("gan", GanConfig, GanGenerator,
                      "conditional DCGAN: hinge loss, spectral-norm projection D with "
                      "minibatch std, EMA generator"),
    ]
