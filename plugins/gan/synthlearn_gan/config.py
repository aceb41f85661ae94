"""Recipe params of ``generator: {use: gan}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from synthlearn import device_name

LOSSES: tuple[str, ...] = ("hinge", "nonsaturating")

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _int_at_least(low: int) -> Validator:
    """A validator: an integer (not a bool) no smaller than ``low``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"'{attribute.name}' must be an integer >= {low}, got {value!r}")

    return check


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _real(value) or not value > 0:
        raise ValueError(f"'{attribute.name}' must be a positive number, got {value!r}")


def _unit_interval(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """0 <= value < 1 (Adam betas, the EMA decay)."""
    if not _real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


def _loss(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in LOSSES:
        raise ValueError(f"'{attribute.name}' must be one of {', '.join(LOSSES)} (got {value!r})")


def _bool(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be true or false, got {value!r}")


@attrs.frozen
class GanConfig:
    """Params of the ``gan`` generator.

    ``steps`` is the training budget in generator updates (each preceded by ``d_steps``
    discriminator updates) on batches of ``batch_size`` real and ``batch_size`` fake
    images; ``lr_g``/``lr_d``, ``beta1``/``beta2`` configure the two Adam optimisers.
    ``latent_dim`` is the noise size (the class embedding has the same size) and
    ``width`` the channel count at full resolution (it doubles at each halving of the
    resolution, capped at 8x). ``loss`` is ``hinge`` or ``nonsaturating``. ``ema`` is
    the decay of the moving average of the generator weights used for sampling (with a
    warm-up so short runs work). ``augment`` applies differentiable augmentation
    (DiffAugment: translation, brightness/contrast, cutout) to real and fake images
    before the discriminator, against a discriminator that memorises a small site; off
    by default, worth turning on for long fits or sites of a few hundred images.
    ``d_steps`` is the number of discriminator updates per generator update.
    ``min_images`` is the smallest site it fits on. ``device`` is ``auto``, ``cpu``,
    ``cuda`` or ``cuda:N``.

    The defaults fit a 28x28 site of about 800 images in about 5 minutes on a 2-core
    CPU; on a GPU, a larger ``width`` (e.g. 64) and ``batch_size`` (64) cost little.
    """

    steps: int = attrs.field(
        default=2500, validator=_int_at_least(1),
        metadata={"doc": "training budget in generator updates, each preceded by `d_steps` "
                         "discriminator updates (>= 1)"})
    batch_size: int = attrs.field(
        default=32, validator=_int_at_least(1),
        metadata={"doc": "real and fake images per update, each (>= 1)"})
    lr_g: float = attrs.field(
        default=2e-4, validator=_positive,
        metadata={"doc": "Adam learning rate of the generator (> 0)"})
    lr_d: float = attrs.field(
        default=2e-4, validator=_positive,
        metadata={"doc": "Adam learning rate of the discriminator (> 0)"})
    beta1: float = attrs.field(
        default=0.0, validator=_unit_interval,
        metadata={"doc": "Adam beta1 of both optimisers, in [0, 1)"})
    beta2: float = attrs.field(
        default=0.9, validator=_unit_interval,
        metadata={"doc": "Adam beta2 of both optimisers, in [0, 1)"})
    latent_dim: int = attrs.field(
        default=64, validator=_int_at_least(1),
        metadata={"doc": "noise size; the class embedding has the same size (>= 1)"})
    width: int = attrs.field(
        default=16, validator=_int_at_least(1),
        metadata={"doc": "channels at full resolution; doubles at each halving of the "
                         "resolution, capped at 8x (>= 1)"})
    loss: str = attrs.field(
        default="hinge", validator=_loss,
        metadata={"doc": "adversarial loss: `hinge` or `nonsaturating`"})
    ema: float = attrs.field(
        default=0.999, validator=_unit_interval,
        metadata={"doc": "decay of the moving average of the generator weights used for sampling"
                         " (with a warm-up so short runs work), in [0, 1)"})
    augment: bool = attrs.field(
        default=False, validator=_bool,
        metadata={"doc": "differentiable augmentation (translation, brightness/contrast, cutout)"
                         " of real and fake images before the discriminator, against a "
                         "discriminator that memorises a small site; worth turning on for long "
                         "fits or sites of a few hundred images"})
    d_steps: int = attrs.field(
        default=1, validator=_int_at_least(1),
        metadata={"doc": "discriminator updates per generator update (>= 1)"})
    min_images: int = attrs.field(
        default=32, validator=_int_at_least(1),
        metadata={"doc": "the smallest site it fits on (>= 1)"})
    device: str = attrs.field(
        default="auto", validator=device_name,
        metadata={"doc": "`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`"})

    def to_dict(self) -> dict[str, Any]:
        """The params as a JSON-able dict (what ``state()`` writes into its meta)."""
        return attrs.asdict(self)
