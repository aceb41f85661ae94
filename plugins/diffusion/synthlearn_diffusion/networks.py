"""The denoising network (a diffusers ``UNet2DModel`` with class conditioning), the UNet
config it is built from (checked against an allow-list before anything is built), the
noise schedule and the samplers.

diffusers is imported inside the functions that need it, so registering the plugin and
building a generator object (what ``synthlearn validate`` does) stay quick.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn as nn

#: The noise schedule and prediction type (fixed; the README says why): the cosine
#: schedule of Nichol & Dhariwal (2021) and v-prediction (Salimans & Ho, 2022).
SCHEDULE: dict[str, Any] = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                            "prediction_type": "v_prediction"}

#: Most image (or latent) channels the UNet takes.
MAX_CHANNELS = 8

#: Largest side (pixels, after padding) the UNet is built for.
MAX_SIDE = 256

#: Largest channel count of a level, and most classes a loaded payload may claim.
MAX_WIDTH = 2048
MAX_CLASSES = 1000
MAX_VECTOR = 4096

#: Channels per attention head (divides every attention level's width: multiples of 16).
HEAD_DIM = 16

#: Groups of the group normalisation (divides every level's width: multiples of 8).
NORM_GROUPS = 8

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")

#: The UNet config keys this plugin writes and reads, and nothing else: a loaded config
#: with another key (or without one of these) is refused before anything is built.
UNET_KEYS = frozenset({
    "sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
    "down_block_types", "up_block_types", "add_attention", "attention_head_dim",
    "norm_num_groups", "time_embedding_dim", "class_embed_type",
})


#: The autoencoder config keys this plugin writes and reads (``latent: true``).
AE_KEYS = frozenset({
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor",
    "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention",
})

#: Largest latent scaling factor a loaded autoencoder config may claim.
MAX_SCALING = 1e4


def pad_side(side: int, levels: int) -> int:
    """The UNet's side for images of ``side``: the next multiple of 2^(levels-1)."""
    factor = 2 ** (levels - 1)
    return -(-side // factor) * factor


def unet_config(channels: int, side: int, width: int, levels: int, layers_per_block: int,
                attention: bool) -> dict[str, Any]:
    """The ``UNet2DModel`` config (JSON-able) of the network this plugin builds:
    ``levels`` levels of ``width``, ``2*width``, ``2*width``, ...  channels, self-attention
    at the lowest level (and in the middle block) when ``attention``, and the class
    embedding supplied from outside (``class_embed_type: identity``)."""
    blocks = [width] + [2 * width] * (levels - 1)
    attn = [attention and i == levels - 1 for i in range(levels)]
    return {
        "sample_size": pad_side(side, levels),
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": blocks,
        "layers_per_block": layers_per_block,
        "down_block_types": [DOWN_BLOCKS[a] for a in attn],
        "up_block_types": [UP_BLOCKS[a] for a in reversed(attn)],
        "add_attention": attention,
        "attention_head_dim": HEAD_DIM,
        "norm_num_groups": NORM_GROUPS,
        "time_embedding_dim": 4 * width,
        "class_embed_type": "identity",
    }


def _count(value: Any, low: int, high: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high


def _shape_problem(config: Any, name: str, keys: frozenset[str],
                   max_levels: int) -> str | None:
    """Why ``config`` is not a JSON object of exactly ``keys`` whose
    ``block_out_channels`` are 2 to ``max_levels`` multiples of ``NORM_GROUPS`` up to
    ``MAX_WIDTH``, or None (the part the UNet's and the autoencoder's checks share)."""
    if not isinstance(config, dict):
        return f"{name!r} is not a JSON object"
    if set(config) != keys:
        extra, missing = sorted(set(config) - keys), sorted(keys - set(config))
        what, odd = ("unexpected", extra[0]) if extra else ("missing", missing[0])
        return f"{name!r} has {what} key {str(odd)[:40]!r}"
    blocks = config["block_out_channels"]
    if not (isinstance(blocks, list) and 2 <= len(blocks) <= max_levels
            and all(_count(b, NORM_GROUPS, MAX_WIDTH) and b % NORM_GROUPS == 0
                    for b in blocks)):
        return (f"{name!r} block_out_channels must be 2 to {max_levels} multiples of "
                f"{NORM_GROUPS} up to {MAX_WIDTH}, got {str(blocks)[:60]!r}")
    return None


def _first_failed(name: str, config: dict[str, Any],
                  checks: list[tuple[str, bool, str]]) -> str | None:
    """The message for the first ``(key, ok, rule)`` check that failed, or None."""
    for key, ok, rule in checks:
        if not ok:
            return f"{name!r} {key} must be {rule}, got {str(config[key])[:40]!r}"
    return None


def unet_config_problem(config: Any) -> str | None:
    """Why ``config`` (from a received payload) is not a UNet config this plugin builds,
    or None: exactly the keys ``UNET_KEYS``, each value of its type and within bounds,
    so that building it (on the meta device first) cannot ask for an absurd network."""
    problem = _shape_problem(config, "unet", UNET_KEYS, 6)
    if problem:
        return problem
    blocks = config["block_out_channels"]
    levels = len(blocks)
    checks = [
        ("sample_size", _count(config["sample_size"], 2 ** (levels - 1), MAX_SIDE)
         and config["sample_size"] % 2 ** (levels - 1) == 0,
         f"an integer multiple of {2 ** (levels - 1)} up to {MAX_SIDE}"),
        ("in_channels", _count(config["in_channels"], 1, MAX_CHANNELS), f"in 1..{MAX_CHANNELS}"),
        ("out_channels", config["out_channels"] == config["in_channels"],
         "equal to in_channels"),
        ("layers_per_block", _count(config["layers_per_block"], 1, 4), "in 1..4"),
        ("down_block_types", isinstance(config["down_block_types"], list)
         and len(config["down_block_types"]) == levels
         and all(b in DOWN_BLOCKS for b in config["down_block_types"]),
         f"{levels} of {', '.join(DOWN_BLOCKS)}"),
        ("up_block_types", isinstance(config["up_block_types"], list)
         and len(config["up_block_types"]) == levels
         and all(b in UP_BLOCKS for b in config["up_block_types"]),
         f"{levels} of {', '.join(UP_BLOCKS)}"),
        ("add_attention", isinstance(config["add_attention"], bool), "true or false"),
        ("attention_head_dim", config["attention_head_dim"] == HEAD_DIM, f"{HEAD_DIM}"),
        ("norm_num_groups", config["norm_num_groups"] == NORM_GROUPS, f"{NORM_GROUPS}"),
        ("time_embedding_dim", _count(config["time_embedding_dim"], 1, 4 * MAX_WIDTH),
         f"in 1..{4 * MAX_WIDTH}"),
        ("class_embed_type", config["class_embed_type"] == "identity", "'identity'"),
    ]
    problem = _first_failed("unet", config, checks)
    if problem:
        return problem
    attn_widths = [b for b, kind in zip(blocks, config["down_block_types"], strict=True)
                   if kind.startswith("Attn")]
    if config["add_attention"]:
        attn_widths.append(blocks[-1])
    if any(b % HEAD_DIM for b in attn_widths):
        return f"'unet' attention levels need widths that are multiples of {HEAD_DIM}"
    return None


def ae_config(channels: int, side: int, width: int, levels: int, latent_channels: int
              ) -> dict[str, Any]:
    """The ``AutoencoderKL`` config (JSON-able) of the site's autoencoder: ``levels``
    levels of ``width``, ``2*width``, ... channels (the latent side is the padded image
    side over 2^(levels-1)), no attention, no quant convs; ``scaling_factor`` is set
    after fitting (1 / the standard deviation of the site's latents)."""
    return {
        "in_channels": channels,
        "out_channels": channels,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [width * min(2 ** i, 2) for i in range(levels)],
        "layers_per_block": 1,
        "latent_channels": latent_channels,
        "norm_num_groups": NORM_GROUPS,
        "sample_size": pad_side(side, levels),
        "scaling_factor": 1.0,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": False,
    }


def latent_side(ae: dict[str, Any]) -> int:
    """The latent side of the autoencoder ``ae``."""
    return ae["sample_size"] // 2 ** (len(ae["block_out_channels"]) - 1)


def ae_config_problem(config: Any) -> str | None:
    """Why ``config`` (from a received payload) is not an autoencoder config this plugin
    builds, or None: exactly the keys ``AE_KEYS``, each value of its type and within
    bounds."""
    problem = _shape_problem(config, "autoencoder", AE_KEYS, 4)
    if problem:
        return problem
    levels = len(config["block_out_channels"])
    scaling = config["scaling_factor"]
    checks = [
        ("in_channels", _count(config["in_channels"], 1, 4), "in 1..4"),
        ("out_channels", config["out_channels"] == config["in_channels"],
         "equal to in_channels"),
        ("down_block_types", config["down_block_types"] == ["DownEncoderBlock2D"] * levels,
         f"{levels} x DownEncoderBlock2D"),
        ("up_block_types", config["up_block_types"] == ["UpDecoderBlock2D"] * levels,
         f"{levels} x UpDecoderBlock2D"),
        ("layers_per_block", _count(config["layers_per_block"], 1, 4), "in 1..4"),
        ("latent_channels", _count(config["latent_channels"], 1, MAX_CHANNELS),
         f"in 1..{MAX_CHANNELS}"),
        ("norm_num_groups", config["norm_num_groups"] == NORM_GROUPS, f"{NORM_GROUPS}"),
        ("sample_size", _count(config["sample_size"], 2 ** (levels - 1), MAX_SIDE)
         and config["sample_size"] % 2 ** (levels - 1) == 0,
         f"an integer multiple of {2 ** (levels - 1)} up to {MAX_SIDE}"),
        ("scaling_factor", isinstance(scaling, (int, float)) and not isinstance(scaling, bool)
         and math.isfinite(scaling) and 0 < scaling <= MAX_SCALING,
         f"a number in (0, {MAX_SCALING:g}]"),
        ("use_quant_conv", config["use_quant_conv"] is False, "false"),
        ("use_post_quant_conv", config["use_post_quant_conv"] is False, "false"),
        ("mid_block_add_attention", config["mid_block_add_attention"] is False, "false"),
    ]
    return _first_failed("autoencoder", config, checks)


def build_autoencoder(config: dict[str, Any]) -> nn.Module:
    """A diffusers ``AutoencoderKL`` for ``config`` (random initialisation)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(config)


class DiffusionNet(nn.Module):
    """``UNet2DModel`` plus the conditioning it is given as its class embedding: a learned
    embedding of the class (row ``num_classes`` is the null class of classifier-free
    guidance) plus, when conditions carry a float vector, a linear projection of it
    (no bias, so the zero vector given with the null class adds nothing)."""

    def __init__(self, unet: dict[str, Any], num_classes: int, vector_size: int,
                 autoencoder: dict[str, Any] | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel.from_config(unet)
        embed = unet["time_embedding_dim"]
        self.num_classes = num_classes
        self.class_embed = nn.Embedding(num_classes + 1, embed)
        self.vector_proj = nn.Linear(vector_size, embed, bias=False) if vector_size else None
        # latent mode: the autoencoder's decoder travels with the network (no encoder)
        self.autoencoder = None
        if autoencoder is not None:
            self.attach_decoder(build_autoencoder(autoencoder))

    def attach_decoder(self, autoencoder: nn.Module) -> None:
        """Keep ``autoencoder`` without its encoder (only the decoder leaves a site)."""
        autoencoder.encoder = None
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                vectors: torch.Tensor) -> torch.Tensor:
        """The v-prediction for noisy ``x`` at timesteps ``t``; ``labels`` may hold the
        null class ``num_classes`` (give it zero ``vectors``)."""
        cond = self.class_embed(labels)
        if self.vector_proj is not None:
            cond = cond + self.vector_proj(vectors)
        return self.unet(x, t, class_labels=cond).sample


def build_net(unet: dict[str, Any], num_classes: int, vector_size: int,
              autoencoder: dict[str, Any] | None = None,
              device: str | torch.device | None = None) -> DiffusionNet:
    """A ``DiffusionNet`` (with the decoder of ``autoencoder`` when given);
    ``device='meta'`` gives the layout without allocating."""
    if device is None:
        return DiffusionNet(unet, num_classes, vector_size, autoencoder)
    with torch.device(device):
        return DiffusionNet(unet, num_classes, vector_size, autoencoder)


def alphas_cumprod(steps: int = SCHEDULE["num_train_timesteps"]) -> torch.Tensor:
    """The cosine schedule's cumulative signal rates, as diffusers' ``squaredcos_cap_v2``
    makes them (betas capped at 0.999), float64."""
    def bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - bar((i + 1) / steps) / bar(i / steps), 0.999)
                          for i in range(steps)], dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def make_sampler(kind: str, sample_steps: int, clip: bool) -> Any:
    """The diffusers scheduler ``kind`` set to ``sample_steps`` steps over the training
    schedule (the first step at the last training timestep: pure noise). ``clip`` keeps
    each step's estimate of the clean image in [-1, 1] (pixel space, where guidance
    otherwise pushes it past the range): dynamic thresholding for DPM-Solver++, clipping
    for DDIM."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    with warnings.catch_warnings():  # diffusers' own numpy 2 `copy=` notice, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        if kind == "ddim":
            scheduler = DDIMScheduler(**SCHEDULE, timestep_spacing="trailing",
                                      clip_sample=clip, clip_sample_range=1.0,
                                      set_alpha_to_one=True)
        else:
            scheduler = DPMSolverMultistepScheduler(
                **SCHEDULE, algorithm_type="dpmsolver++", solver_order=2,
                timestep_spacing="trailing", lower_order_final=True,
                thresholding=clip, sample_max_value=1.0)
        scheduler.set_timesteps(sample_steps)
    return scheduler
