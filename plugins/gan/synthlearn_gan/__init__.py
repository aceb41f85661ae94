"""synthlearn-gan: a conditional DCGAN-family image generator for synthlearn.

Registered as the generator ``gan`` (see ``plugin.py``); the recipe writes
``generator: {use: gan, params: {steps: 3000}}``.
"""

from synthlearn_gan.config import GanConfig
from synthlearn_gan.generator import GanGenerator

__all__ = ["GanConfig", "GanGenerator"]
