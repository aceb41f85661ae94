"""What the object a component's factory returns must offer, per kind.

These are structural (``typing.Protocol``): a plugin does not subclass anything, it only
provides these attributes and methods. ``hookspecs.py`` says which hook registers which
kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from synthlearn.arms.context import ArmContext, ArmResult
    from synthlearn.data.types import AttributeInfo, Dataset, ImageData
    from synthlearn.generation.conditioning import Conditions
    from synthlearn.models.training import TrainSettings
    from synthlearn.sitework.exchange import Payload
    from synthlearn.sitework.sites import Site, SiteEnv, SiteTask


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
class ConditioningScheme(Protocol):
    """kind ``conditioning``: what a generator is conditioned on (see
    ``synthlearn.generation.conditioning`` for the built-in schemes).

    The statistics ``summarize`` returns are aggregate (counts, means, rates), JSON-able,
    and travel with a site's output; ``encode`` and ``sample`` need nothing else.
    """

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Raise ``SynthlearnError`` if this dataset cannot support the scheme."""
        ...

    def summarize(self, data: ImageData, num_classes: int,
                  attributes: Sequence[AttributeInfo]) -> dict[str, Any]:
        """Aggregate statistics of one site's labels and attributes."""
        ...

    def encode(self, labels: np.ndarray, attributes: dict[str, np.ndarray],
               stats: dict[str, Any]) -> Conditions:
        """Labels plus attributes -> class indices and a float vector per image, row by
        row (the server encodes a large draw in chunks, so row ``i`` may depend only on
        image ``i`` and ``stats``)."""
        ...

    # Optional: ``check_stats(stats, num_classes=None, where=None) -> None`` raises a
    # ``SynthlearnError`` naming ``where`` and the field when statistics that came from
    # a site or a file are malformed or sized beyond reason; it runs before ``encode``
    # or ``sample`` see them (``synthlearn.generation.conditioning.check_stats``). A scheme without
    # it only gets the check that the statistics are a JSON object.

    def sample(self, stats: dict[str, Any], n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` new labels and attribute values following the site's statistics."""
        ...


@runtime_checkable
class Generator(Protocol):
    """kind ``generator``: a conditional image generator fit at one site.

    The factory's object is unfitted; ``fit`` trains it, ``load`` restores a fitted one
    from what ``state`` produced (weights as tensors, architecture and config as JSON
    meta: loading never unpickles). ``sample`` must be deterministic for a given seed.
    """

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Raise ``SynthlearnError`` naming the site if a site is too small to fit on,
        or the image shape is one the generator cannot make."""
        ...

    def fit(self, data: ImageData, conditions: Conditions, num_classes: int, seed: int, *,
            progress: bool = True, desc: str = "generator") -> None:
        """Train on one site's uint8 images under ``conditions`` (one per image)."""
        ...

    def sample(self, conditions: Conditions, seed: int) -> np.ndarray:
        """uint8 images (N, C, H, W), one per condition."""
        ...

    def state(self) -> Payload:
        """The fitted generator as a payload (what ``share: generator`` sends)."""
        ...

    def load(self, payload: Payload, source: str) -> None:
        """Restore a fitted generator; a malformed payload is a ``SynthlearnError``
        naming ``source``."""
        ...


@runtime_checkable
class Arm(Protocol):
    """kind ``arm``: one arm of the comparison.

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


def __getattr__(name: str) -> Any:
    """``PoolingArm``, the old name of ``Arm``, still imports, with a DeprecationWarning."""
    if name == "PoolingArm":
        import warnings

        warnings.warn("synthlearn.interfaces.PoolingArm is deprecated: use "
                      "synthlearn.interfaces.Arm (the kind 'pooling' is now 'arm')",
                      DeprecationWarning, stacklevel=2)
        return Arm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
