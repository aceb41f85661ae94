"""FedGAN's site side: one round of local GAN steps from the global networks.

Each round the server sends the global generator and discriminator (one payload, their
weights under ``generator.`` and ``discriminator.``); the site loads both, trains them
on its own images for its share of the gan's ``steps`` with fresh Adam optimisers (as
FedAvg restarts its optimiser every round), and sends both back. Nothing else leaves
the site but, once, its conditioning statistics (``site_summary``: the class counts and
attribute aggregates the server samples the global generator with).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from synthlearn.api import (
    Payload,
    Site,
    SiteEnv,
    SynthlearnError,
    describe_slots,
    deterministic_cudnn,
    load_state,
    resolve_device,
    site_private_training,
)

from synthlearn_gan.config import GanConfig
from synthlearn_gan.generator import EMA_WARMUP, GanSteps, _Batches, build_pair, private_steps

#: Name prefixes of the two networks in a round's payload.
NETS: tuple[str, ...] = ("generator", "discriminator")


@attrs.frozen
class FedGanRound:
    """What a site needs for one round: the round (0-based) and how many gan steps it
    takes in it."""

    round: int
    steps: int


def architecture(config: GanConfig, image_shape: tuple[int, int, int], num_classes: int,
                 vector_size: int) -> dict[str, Any]:
    """The architecture both networks are built from, the same at the server and at
    every site (it is also the generator payload's meta)."""
    return {"image_shape": [int(s) for s in image_shape], "num_classes": int(num_classes),
            "vector_size": int(vector_size), "config": config.to_dict()}


def pair_state(gen: torch.nn.Module, disc: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Both networks' weights in one flat dict, prefixed by ``NETS``, on the CPU in the
    default memory layout."""
    out = {}
    for prefix, net in zip(NETS, (gen, disc), strict=True):
        for name, tensor in net.state_dict().items():
            out[f"{prefix}.{name}"] = tensor.detach().to("cpu").contiguous().clone()
    return out


def load_pair(gen: torch.nn.Module, disc: torch.nn.Module, tensors: dict[str, torch.Tensor],
              source: str) -> None:
    """Load ``pair_state``'s tensors into both networks, checked (names, shapes,
    dtypes, finite values) by ``synthlearn.api.load_state``."""
    for prefix, net in zip(NETS, (gen, disc), strict=True):
        part = {name.removeprefix(f"{prefix}."): tensor for name, tensor in tensors.items()
                if name.startswith(f"{prefix}.")}
        load_state(net, Payload(part, {}), source)
    unknown = [name for name in tensors if name.split(".", 1)[0] not in NETS]
    if unknown:
        raise SynthlearnError(f"unexpected tensor {unknown[0]!r} in the global networks",
                              where=source)


def site_summary(site: Site, config: Any, inbound: Payload | None, env: SiteEnv) -> Payload:
    """Site work before the first round: the site's conditioning statistics and image
    count (what the server samples the global generator with, as the synthetic arm's
    ``share: generator`` sends them)."""
    scheme = env.slots["conditioning"].build()
    stats = scheme.summarize(site.data, env.num_classes, env.attributes)
    vector_size = scheme.encode(site.data.labels[:1], {k: v[:1] for k, v in
                                                       site.data.attributes.items()},
                                stats).vector_size
    return Payload({}, {"stats": stats, "n_real": len(site.data), "vector_size": vector_size,
                        **describe_slots(env.slots)})


def fedgan_round(site: Site, config: FedGanRound, inbound: Payload | None, env: SiteEnv
                 ) -> Payload:
    """Site work for one round: the global networks trained ``config.steps`` gan steps on
    this site's images, sent back with the site's image count."""
    if inbound is None:
        raise SynthlearnError("a fedgan round needs the global networks from the server")
    gan: GanConfig = env.slots["generator"].config
    scheme = env.slots["conditioning"].build()
    stats = scheme.summarize(site.data, env.num_classes, env.attributes)
    conditions = scheme.encode(site.data.labels, site.data.attributes, stats)
    arch = architecture(gan, (env.in_chans, *env.image_size), env.num_classes,
                        conditions.vector_size)
    private = site_private_training(env, len(site.data), *private_steps(gan))
    device = resolve_device(gan.device)
    with torch.random.fork_rng(devices=[]), deterministic_cudnn(device.type == "cuda"):
        torch.manual_seed(env.seed)
        gen, disc = build_pair(arch, private is not None)
        load_pair(gen, disc, inbound.tensors, "server")
        rng = torch.Generator().manual_seed(env.seed)
        batches = _Batches(site.data, conditions, device, rng, gan.batch_size, gan.latent_dim)
        steps = GanSteps(gan, gen, disc, batches, device, env.seed, private)
        steps.run(config.steps, progress=env.progress,
                  desc=f"round {config.round}: site {site.id}")
        steps.finish()
    meta = {"round": config.round, "n_real": len(site.data), "steps": config.steps}
    if private is not None:
        meta["privacy"] = private.record()
    return Payload(pair_state(gen, disc), meta)


def round_steps(total: int, rounds: int) -> list[int]:
    """``total`` gan steps split over ``rounds`` rounds as evenly as possible (the first
    rounds take one more when they do not divide)."""
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def ema_decay(config: GanConfig, first_step: int, steps: int) -> float:
    """The generator EMA's decay over ``steps`` steps from ``first_step``: the product of
    the one-shot fit's per-step decays (``min(ema, (1 + t) / (10 + t))``), so an average
    kept at the server over round ends weighs the past as the fit's average does."""
    t = np.arange(first_step, first_step + steps, dtype=np.float64)
    return float(np.prod(np.minimum(config.ema, (1.0 + t) / (EMA_WARMUP + t))))
