"""The ``local`` arm: each site trains on its own images only; nothing is pooled.

Scored on the server's test set, the arm's figures are the mean over sites, and every
site's own figures are reported too. Only the trained weights leave a site (so the
server can evaluate them). With a ``dp:`` slot each site trains under differential
privacy (``synthlearn.arms.site_privacy``) and the arm reports the largest ε.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.site_privacy import PrivacyLedger, site_private_training
from synthlearn.arms.site_steps import check_site_steps, finish_site_model, steps_of
from synthlearn.models.private import dp_steps_per_epoch
from synthlearn.models.training import TrainSettings, train_classifier
from synthlearn.sitework.exchange import Payload, load_state, state_payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask


@attrs.define(frozen=True)
class LocalConfig:
    """The local arm takes no parameters: each site trains the recipe's model and, when
    the model's settings ask for them, applies the site steps (``adapt_bn``,
    ``calibrate``) to it on its own images. Its optional ``dp:`` slot (a
    ``dp_mechanism``, e.g. ``{use: opacus, params: {target_epsilon: 3}}``) trains each
    site's model under differential privacy."""


def train_local_model(site: Site, config: LocalConfig, inbound: Payload | None, env: SiteEnv
                      ) -> Payload:
    """Site work: train the downstream model on this site's images, take the model's
    site steps on them (``synthlearn.arms.site_steps.finish_site_model``), send the
    weights."""
    factory, model = env.new_model()
    n = len(site.data)
    private = site_private_training(env, n, *classifier_dp_steps(n, factory.training))
    train_classifier(model, site.data, factory.training, env.seed, private=private,
                     progress=env.progress, desc=f"local: site {site.id}")
    done = finish_site_model(model, site.data, env.num_classes, factory.training)
    extra = {} if private is None else {"privacy": private.record()}
    return state_payload(model, n=n, site_steps=done, **extra)


def classifier_dp_steps(n: int, training: TrainSettings) -> tuple[int, int]:
    """Batch size and steps of a site's training under DP: every epoch of its images."""
    return training.batch_size, training.epochs * dp_steps_per_epoch(n, training.batch_size)


class LocalArm:
    """Each site's own model, trained only on its own images."""

    private = True

    def __init__(self, config: LocalConfig) -> None:
        self.config = config

    def dp_steps(self, n: int, training: TrainSettings, slots: Mapping[str, Any]
                 ) -> tuple[int, int]:
        """Under DP: each site takes the model's epochs over its own images."""
        return classifier_dp_steps(n, training)

    def run(self, ctx: ArmContext) -> ArmResult:
        check_site_steps(ctx)  # before any work
        ledger = PrivacyLedger.for_arm(ctx)
        task = SiteTask("train_local", train_local_model, self.config,
                        shares="trained model weights")
        received = ctx.run_sites(task)
        if ledger is not None:
            for sid, payload in received.items():
                ledger.add(sid, payload.meta.get("privacy"), f"arm {ctx.name}, site {sid}")
        models = {
            sid: load_state(ctx.build_model(sid), payload, f"site {sid}")
            for sid, payload in received.items()
        }
        steps = steps_of(ctx.training)
        details = {"site_steps": steps} if steps else {}
        return ArmResult(site_models=models, details=details,
                         privacy=None if ledger is None else ledger.summary())
