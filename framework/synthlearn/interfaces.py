"""What the object a component's factory returns must offer, per kind.

These are structural (``typing.Protocol``): a plugin does not subclass anything, it only
provides these attributes and methods. ``hookspecs.py`` says which hook registers which
kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from synthlearn.arms.context import ArmContext, ArmResult
    from synthlearn.data.types import Dataset, ImageData
    from synthlearn.sites import Site, SiteEnv, SiteTask
    from synthlearn.training import TrainSettings


@runtime_checkable
class DatasetSource(Protocol):
    """kind ``dataset``: loads real images with labels (and phenotype attributes)."""

    def load(self, seed: int) -> Dataset:
        """Return the train and test splits. Must be deterministic for a given seed.
        Raise ``synthlearn.errors.DataError`` for a missing or malformed file."""
        ...


@runtime_checkable
class Partitioner(Protocol):
    """kind ``partition``: turns the training split into sites."""

    def split(self, train: ImageData, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Return one integer index array into ``train`` per site (disjoint, non-empty)."""
        ...


@runtime_checkable
class ModelFactory(Protocol):
    """kind ``model``: builds the downstream classifier and says how to train it."""

    training: TrainSettings

    def build(self, in_chans: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
        """A fresh, randomly initialised network mapping (N, C, H, W) floats to logits."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """JSON-able description (architecture, parameter count) for the report."""
        ...


@runtime_checkable
class PoolingArm(Protocol):
    """kind ``pooling``: one arm of the comparison.

    ``private`` is False only for arms whose site outputs include raw images (the
    report then marks the arm "not private"). ``run`` does the site-side work through
    ``ctx.run_sites`` (which counts every byte that crosses) and returns the server-side
    model(s) to evaluate.
    """

    private: bool

    def run(self, ctx: ArmContext) -> ArmResult:
        ...


@runtime_checkable
class Runner(Protocol):
    """kind ``runner``: where site work executes.

    ``execute`` runs ``task.fn(site, task.config, inbound_payload, env)`` for each site
    where that site's data lives, and returns each site's result serialised with
    ``Payload.to_bytes``. Inbound payloads arrive as bytes too. Caching and byte counting
    are done by the caller (``ArmContext.run_sites``), not by the runner.
    """

    def execute(
        self,
        task: SiteTask,
        sites: list[Site],
        envs: Mapping[int, SiteEnv],
        inbound: Mapping[int, bytes],
    ) -> dict[int, bytes]:
        ...
