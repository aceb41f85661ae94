"""Site tasks the runner check sends (module level, so a runner that runs site work
elsewhere can import them by name)."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import Site, SiteEnv


@attrs.define(frozen=True)
class EchoConfig:
    """``fail_site``: the site at which ``echo`` raises (None: none)."""

    fail_site: int | None = None


def echo(site: Site, config: EchoConfig, inbound: Payload | None, env: SiteEnv) -> Payload:
    """What the site holds and what it received: its id, image count, the sum of its
    labels, its seed, and the inbound ``x`` tensor doubled."""
    if config.fail_site == site.id:
        raise RuntimeError(f"site {site.id} fails on purpose")
    tensors: dict[str, Any] = {"labels": torch.as_tensor(site.data.labels.copy())}
    if inbound is not None:
        tensors["doubled"] = inbound.tensors["x"] * 2
    return Payload(tensors, {"site": site.id, "n": len(site.data), "seed": env.seed})
