"""Recipe params of ``generator: {use: diffusion}``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
from synthlearn import device_name, sampling_field

#: Samplers ``sample`` can use (both from diffusers; both deterministic for a seed).
SAMPLERS: tuple[str, ...] = ("dpmsolver++", "ddim")

#: Most resolution levels of the UNet (each halves the side).
MAX_LEVELS = 5

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _int_in(low: int, high: int | None = None) -> Validator:
    """A validator: an integer (not a bool) in ``low..high``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if (isinstance(value, bool) or not isinstance(value, int) or value < low
                or (high is not None and value > high)):
            rule = f">= {low}" if high is None else f"in {low}..{high}"
            raise ValueError(f"'{attribute.name}' must be an integer {rule}, got {value!r}")

    return check


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_or_none(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(instance, attribute, value)


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _real(value) or not 0 < value < float("inf"):
        raise ValueError(f"'{attribute.name}' must be a positive number, got {value!r}")


def _unit_interval(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """0 <= value < 1 (the EMA decay, the null-class rate)."""
    if not _real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


def _guidance(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _real(value) or not 0.0 <= value <= 20.0:
        raise ValueError(f"'{attribute.name}' must be a number in [0, 20], got {value!r}")


def _sampler(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in SAMPLERS:
        raise ValueError(f"'{attribute.name}' must be one of {', '.join(SAMPLERS)} "
                         f"(got {value!r})")


def _bool(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be true or false, got {value!r}")


@attrs.frozen
class DiffusionConfig:
    """Params of the ``diffusion`` generator: a class-conditional diffusers ``UNet2DModel``
    trained with a cosine noise schedule and v-prediction, sampled from an EMA of its
    weights with DPM-Solver++ (or DDIM) and classifier-free guidance.

    The defaults are sized for 28x28 grey sites on a 2-core CPU (the README's "Speed");
    on a GPU raise ``width`` (64 to 128), ``batch_size`` (128) and ``steps``.
    """

    steps: int = attrs.field(
        default=2000, validator=_int_in(1),
        metadata={"doc": "training budget in optimiser updates (>= 1)"})
    batch_size: int = attrs.field(
        default=32, validator=_int_in(1),
        metadata={"doc": "images per update (>= 1)"})
    max_epochs: float | None = attrs.field(
        default=None, validator=_positive_or_none,
        metadata={"doc": "cap the budget at this many passes over the site's images: "
                         "`min(steps, ceil(max_epochs * n / batch_size))` updates at a site "
                         "of n images (null: `steps` everywhere); a site of a few hundred "
                         "images otherwise sees each one hundreds of times, and its samples "
                         "copy them"})
    lr: float = attrs.field(
        default=1e-3, validator=_positive,
        metadata={"doc": "AdamW learning rate (> 0), reached after a linear warm-up over the "
                         "first 5% of the steps"})
    width: int = attrs.field(
        default=32, validator=_int_in(8, 1024),
        metadata={"doc": "UNet channels at full resolution, a multiple of 8 (8 to 1024); "
                         "doubled at the second level and kept after"})
    levels: int = attrs.field(
        default=3, validator=_int_in(2, MAX_LEVELS),
        metadata={"doc": "UNet resolution levels, 2 to 5; each below the first halves the "
                         "side (the image is padded to a multiple of 2^(levels-1) and "
                         "cropped back)"})
    layers_per_block: int = attrs.field(
        default=1, validator=_int_in(1, 4),
        metadata={"doc": "residual blocks per UNet level, 1 to 4"})
    attention: bool = attrs.field(
        default=True, validator=_bool,
        metadata={"doc": "self-attention at the lowest resolution level and in the middle "
                         "block"})
    ema: float = attrs.field(
        default=0.999, validator=_unit_interval,
        metadata={"doc": "decay of the moving average of the weights used for sampling (with "
                         "a warm-up so short fits work), in [0, 1)"})
    cond_drop: float = attrs.field(
        default=0.1, validator=_unit_interval,
        metadata={"doc": "share of training images given the learned null class (and no "
                         "condition vector) so that the model also learns the unconditional "
                         "score classifier-free guidance needs, in [0, 1); 0 disables "
                         "guidance (sampling then uses the conditional model alone)"})
    sample_steps: int = sampling_field(
        default=20, validator=_int_in(1, 1000),
        metadata={"doc": "sampler steps per image, 1 to 1000 (network evaluations: twice "
                         "that with guidance other than 0 or 1); sampling only: read from the "
                         "config of the side that samples, and a change reuses the site's fit"})
    guidance: float = sampling_field(
        default=2.0, validator=_guidance,
        metadata={"doc": "classifier-free guidance scale in [0, 20]: 0 unconditional, 1 the "
                         "conditional model alone, above 1 more class-typical images with "
                         "less variety; sampling only, like `sample_steps`"})
    sampler: str = sampling_field(
        default="dpmsolver++", validator=_sampler,
        metadata={"doc": "`dpmsolver++` (second-order multistep DPM-Solver++) or `ddim`; "
                         "both deterministic for a seed; sampling only, like `sample_steps`"})
    latent: bool = attrs.field(
        default=False, validator=_bool,
        metadata={"doc": "latent diffusion (CATphishing): each site first fits a small "
                         "`AutoencoderKL` (no pretrained weights) on its own images and the "
                         "UNet runs in its latent space; the decoder travels with the "
                         "generator"})
    latent_channels: int = attrs.field(
        default=4, validator=_int_in(1, 8),
        metadata={"doc": "channels of the latent space, 1 to 8 (with `latent`)"})
    ae_width: int = attrs.field(
        default=32, validator=_int_in(8, 512),
        metadata={"doc": "autoencoder channels at full resolution, a multiple of 8 (8 to "
                         "512), doubled below (with `latent`)"})
    ae_levels: int = attrs.field(
        default=2, validator=_int_in(2, 4),
        metadata={"doc": "autoencoder levels, 2 to 4: the latent side is the image side "
                         "over 2^(ae_levels-1), e.g. 28 -> 14 (with `latent`)"})
    ae_steps: int = attrs.field(
        default=1000, validator=_int_in(1),
        metadata={"doc": "autoencoder training updates before the UNet's, on batches of "
                         "`batch_size` (>= 1; with `latent`)"})
    ae_kl: float = attrs.field(
        default=1e-5, validator=_unit_interval,
        metadata={"doc": "weight of the KL term that keeps the latents near a standard "
                         "Gaussian, in [0, 1) (with `latent`)"})
    min_images: int = attrs.field(
        default=32, validator=_int_in(1),
        metadata={"doc": "the smallest site it fits on (>= 1)"})
    device: str = attrs.field(
        default="auto", validator=device_name,
        metadata={"doc": "`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`"})

    def __attrs_post_init__(self) -> None:
        for name in ("width", "ae_width"):
            if getattr(self, name) % 8:
                raise ValueError(f"'{name}' must be a multiple of 8 (group normalisation in "
                                 f"groups of 8), got {getattr(self, name)}")

    def steps_for(self, n: int) -> int:
        """Optimiser updates of a fit on ``n`` images: ``steps``, capped by
        ``max_epochs``."""
        if self.max_epochs is None:
            return self.steps
        return max(1, min(self.steps, math.ceil(self.max_epochs * n / self.batch_size)))

    def to_dict(self) -> dict[str, Any]:
        """The params as a JSON-able dict (what ``state()`` writes into its meta)."""
        return attrs.asdict(self)
