"""synthlearn-diffusion: a class-conditional diffusion image generator for synthlearn,
built on diffusers' ``UNet2DModel`` and its schedulers.

Registered as the generator ``diffusion`` (see ``plugin.py``); the recipe writes
``generator: {use: diffusion, params: {steps: 3000}}``. ``DiffusionGenerator`` is
imported on first use (it brings torch), so registering the plugin stays quick.
"""

from __future__ import annotations

from typing import Any

from synthlearn_diffusion.config import DiffusionConfig

__all__ = ["DiffusionConfig", "DiffusionGenerator"]


def __getattr__(name: str) -> Any:
    if name == "DiffusionGenerator":
        from synthlearn_diffusion.generator import DiffusionGenerator

        return DiffusionGenerator
    raise AttributeError(f"module 'synthlearn_diffusion' has no attribute {name!r}")
