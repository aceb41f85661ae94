"""Batch-norm statistics re-estimated on the sites' real images (AdaBN across sites).

A classifier trained on synthetic images normalises its features with batch-norm
statistics of synthetic images. Where the generator misses the real images' intensity
or texture statistics, those running means and variances are off for real images and
shift every prediction. With ``adapt_bn`` the server sends its trained model to each
site; the site recomputes every batch-norm layer's running mean and variance over its
own images under the model's weights and sends back only those per-channel statistics
and its image count. The server pools them (law of total variance, weighted by images)
into the model. No weight is trained on real images; the statistics are aggregates over
a whole site, like the conditioning statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
import torch
import torch.nn as nn

from synthlearn.errors import SynthlearnError
from synthlearn.models.training import batchnorm_layers, refresh_batchnorm
from synthlearn.sitework.exchange import Payload, load_state, state_payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext

#: Largest image count a site may send with its statistics (it weights them).
MAX_IMAGE_COUNT = 100_000_000


def image_count(payload: Payload, sid: int, what: str) -> int:
    """The image count ``n`` a site sent with ``what`` (its statistics, its biases), as
    an integer in 1..``MAX_IMAGE_COUNT``; anything else is an error naming the site."""
    n = payload.meta.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGE_COUNT:
        text = repr(n) if len(repr(n)) < 40 else repr(n)[:37] + "..."
        raise SynthlearnError(f"{what} with a bad image count {text} (an integer in "
                              f"1..{MAX_IMAGE_COUNT} expected)", where=f"site {sid}")
    return n


#: What leaves a site for ``adapt_bn`` (for the report).
SHARES = ("per-channel batch-norm means and variances of the server's model over the "
          "site's images, and its image count")


@attrs.frozen
class AdaptConfig:
    """The site task's config: nothing but a tag (the model arrives as the inbound)."""

    what: str = "batchnorm-statistics"


def site_statistics(site: Site, config: AdaptConfig, inbound: Payload | None, env: SiteEnv
                    ) -> Payload:
    """Site work: load the server's model, recompute its batch-norm statistics over this
    site's images, send back only ``<layer>.running_mean`` / ``.running_var`` and ``n``."""
    if inbound is None:
        raise ValueError("batch-norm adaptation needs the server's model")
    factory, model = env.new_model()
    load_state(model, inbound, "server")
    refresh_batchnorm(model, site.data.images, device=factory.training.device)
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in batchnorm_layers(model):
        tensors[f"{name}.running_mean"] = layer.running_mean.detach().clone()
        tensors[f"{name}.running_var"] = layer.running_var.detach().clone()
    return Payload(tensors, {"n": len(site.data)})


def pool_statistics(model: nn.Module, received: Mapping[int, Payload]) -> int:
    """Set ``model``'s batch-norm running statistics to the image-weighted pool of the
    sites' statistics (mean of means; mean of variances plus the variance of the means)
    and return the number of layers set. A payload that lacks a layer, has the wrong
    shape or non-finite values is an error naming its site."""
    layers = batchnorm_layers(model)
    counts = {sid: image_count(payload, sid, "batch-norm statistics")
              for sid, payload in received.items()}
    total = sum(counts.values())
    for name, layer in layers:
        mean = torch.zeros_like(layer.running_mean, dtype=torch.float64)
        second = torch.zeros_like(mean)  # E[x^2] = var + mean^2, pooled over sites
        for sid, payload in sorted(received.items()):
            site_mean = _statistic(payload, f"{name}.running_mean", layer.running_mean, sid)
            site_var = _statistic(payload, f"{name}.running_var", layer.running_var, sid)
            weight = counts[sid] / total
            mean += weight * site_mean
            second += weight * (site_var + site_mean.square())
        layer.running_mean.copy_(mean)
        layer.running_var.copy_((second - mean.square()).clamp_min(0.0))
    return len(layers)


def _statistic(payload: Payload, name: str, like: torch.Tensor, sid: int) -> torch.Tensor:
    value = payload.tensors.get(name)
    if value is None or value.shape != like.shape or not torch.isfinite(value).all():
        raise SynthlearnError(f"batch-norm statistic {name} is missing, not of shape "
                              f"{tuple(like.shape)} or not finite", where=f"site {sid}")
    return value.double()


def adapt_at_sites(ctx: ArmContext, model: nn.Module) -> int:
    """Send ``model`` to every site of ``ctx`` and replace its batch-norm statistics by
    the pool of those the sites measure on their own images; returns the layers set."""
    task = SiteTask("adapt_bn", site_statistics, AdaptConfig(), shares=SHARES)
    return pool_statistics(model, ctx.run_sites(task, inbound=state_payload(model)))
