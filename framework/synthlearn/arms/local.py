"""The ``local`` arm: each site trains on its own images only; nothing is pooled.

Scored on the server's test set, the arm's figures are the mean over sites, and every
site's own figures are reported too. Only the trained weights leave a site (so the
server can evaluate them).
"""

from __future__ import annotations

import attrs

from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.exchange import Payload, load_state, state_payload
from synthlearn.sites import Site, SiteEnv, SiteTask
from synthlearn.training import train_classifier


@attrs.define(frozen=True)
class LocalConfig:
    """The local arm takes no parameters: each site trains the recipe's model."""


def train_local_model(site: Site, config: LocalConfig, inbound: Payload | None, env: SiteEnv
                      ) -> Payload:
    """Site work: train the downstream model on this site's images; send the weights."""
    factory, model = env.new_model()
    train_classifier(model, site.data, factory.training, env.seed, progress=env.progress,
                     desc=f"local: site {site.id}")
    return state_payload(model, n=len(site.data))


class LocalArm:
    """Each site's own model, trained only on its own images."""

    private = True

    def __init__(self, config: LocalConfig) -> None:
        self.config = config

    def run(self, ctx: ArmContext) -> ArmResult:
        task = SiteTask("train_local", train_local_model, self.config,
                        shares="trained model weights")
        received = ctx.run_sites(task)
        models = {
            sid: load_state(ctx.build_model(sid), payload, f"site {sid}")
            for sid, payload in received.items()
        }
        return ArmResult(site_models=models)
