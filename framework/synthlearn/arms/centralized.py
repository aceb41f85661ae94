"""The ``centralized`` arm: every site sends its raw images to the server.

The upper bound on utility and the lower bound on privacy: it is the one arm that pools
real patient images, and every output marks it "not private".
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.site_steps import check_site_steps, finish_at_sites
from synthlearn.data.types import ImageData
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask


@attrs.define(frozen=True)
class CentralizedConfig:
    """The centralized arm takes no parameters: it trains the recipe's model on the
    union of all sites' images, then takes the model's site steps (``adapt_bn``,
    ``calibrate``) like every other arm."""


def share_raw_images(site: Site, config: Any, inbound: Payload | None, env: SiteEnv
                     ) -> Payload:
    """Site work: send the site's images, labels and attributes, unchanged."""
    data = site.data
    tensors = {"images": torch.from_numpy(data.images), "labels": torch.from_numpy(data.labels)}
    for name, values in data.attributes.items():
        tensors[f"attr.{name}"] = torch.from_numpy(values)
    return Payload(tensors, {"n": len(data)})


def payload_images(payload: Payload) -> ImageData:
    """The ``ImageData`` carried by a payload made by ``share_raw_images``."""
    t = payload.tensors
    return ImageData(
        images=t["images"].numpy(),
        labels=t["labels"].numpy(),
        attributes={k.removeprefix("attr."): v.numpy() for k, v in t.items()
                    if k.startswith("attr.")},
    )


class CentralizedArm:
    """Pool every site's raw images at the server and train one model on them."""

    private = False

    def __init__(self, config: CentralizedConfig) -> None:
        self.config = config

    def run(self, ctx: ArmContext) -> ArmResult:
        check_site_steps(ctx)  # before any work
        task = SiteTask("share_raw_images", share_raw_images, self.config,
                        shares="raw images, labels and attributes")
        received = ctx.run_sites(task)
        pooled = ImageData.concat([payload_images(received[sid]) for sid in sorted(received)])
        model = ctx.train(pooled, "pooled", desc="pooled real images")
        details: dict[str, Any] = {"n_train": len(pooled)}
        details.update(finish_at_sites(ctx, model))
        return ArmResult(model=model, details=details)
