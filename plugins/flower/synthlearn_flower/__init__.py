"""synthlearn-flower: site work on Flower SuperNodes (runner ``flower``, command
``synthlearn-node``). See README.md and docs/design/flower.md."""

from synthlearn_flower.config import FlowerConfig

__all__ = ["FlowerConfig"]
