"""The ``local`` arm: each site trains on its own images only; nothing is pooled.

Scored on the server's test set, the arm's figures are the mean over sites, and every
site's own figures are reported too. Only the trained weights leave a site (so the
server can evaluate them).
"""

from __future__ import annotations

import attrs

from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.site_steps import check_site_steps, finish_site_model, steps_of
from synthlearn.models.training import train_classifier
from synthlearn.sitework.exchange import Payload, load_state, state_payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask


@attrs.define(frozen=True)
class LocalConfig:
    """The local arm takes no parameters: each site trains the recipe's model and, when
    the model's settings ask for them, applies the site steps (``adapt_bn``,
    ``calibrate``) to it on its own images."""


def train_local_model(site: Site, config: LocalConfig, inbound: Payload | None, env: SiteEnv
                      ) -> Payload:
    """Site work: train the downstream model on this site's images, take the model's
    site steps on them (``synthlearn.arms.site_steps.finish_site_model``), send the
    weights."""
    factory, model = env.new_model()
    train_classifier(model, site.data, factory.training, env.seed, progress=env.progress,
                     desc=f"local: site {site.id}")
    done = finish_site_model(model, site.data, env.num_classes, factory.training)
    return state_payload(model, n=len(site.data), site_steps=done)


class LocalArm:
    """Each site's own model, trained only on its own images."""

    private = True

    def __init__(self, config: LocalConfig) -> None:
        self.config = config

    def run(self, ctx: ArmContext) -> ArmResult:
        check_site_steps(ctx)  # before any work
        task = SiteTask("train_local", train_local_model, self.config,
                        shares="trained model weights")
        received = ctx.run_sites(task)
        models = {
            sid: load_state(ctx.build_model(sid), payload, f"site {sid}")
            for sid, payload in received.items()
        }
        steps = steps_of(ctx.training)
        details = {"site_steps": steps} if steps else {}
        return ArmResult(site_models=models, details=details)
