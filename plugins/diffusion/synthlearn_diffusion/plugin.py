"""The hook that registers the ``diffusion`` generator with synthlearn.

Only ``synthlearn`` and this package's config are imported at registration; the
generator module (torch, diffusers) is imported when a recipe builds the generator, so
``synthlearn plugins`` stays quick.
"""

from __future__ import annotations

from typing import Any

from synthlearn import ComponentSpec, hookimpl

from synthlearn_diffusion.config import DiffusionConfig


def make_generator(config: DiffusionConfig) -> Any:
    """The factory: a ``DiffusionGenerator`` for ``config`` (imports torch/diffusers)."""
    from synthlearn_diffusion.generator import DiffusionGenerator

    return DiffusionGenerator(config)


@hookimpl
def synthlearn_register_generators() -> list[ComponentSpec]:
    """The ``diffusion`` generator: its config class, factory and one-line summary."""
    return [
        ComponentSpec("diffusion", DiffusionConfig, make_generator,
                      "class-conditional diffusion (diffusers UNet2DModel): cosine schedule, "
                      "v-prediction, EMA, DPM-Solver++ with classifier-free guidance"),
    ]
