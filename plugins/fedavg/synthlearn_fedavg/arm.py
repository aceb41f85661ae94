"""The ``fedavg`` arm: rounds of local training at the sites and averaging at the server.

Every round goes through ``ctx.run_sites``: the global model crosses to each chosen site
and its trained weights cross back, both as safetensors and both counted in bytes. A
site that fails stops the run with an error naming the site and the round; the server
never averages fewer sites than it asked for. After every ``eval_every`` rounds (and the
last) the global model is scored on the test set and the point (accuracy, bytes so far)
is recorded for metrics.json and the accuracy-against-bytes figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from synthlearn.api import (
    ArmContext,
    ArmResult,
    Payload,
    PrivacyLedger,
    SiteTask,
    SynthlearnError,
    TrainSettings,
    average,
    check_site_steps,
    check_update,
    choose_sites,
    finish_at_sites,
)

from synthlearn_fedavg.config import FedAvgConfig
from synthlearn_fedavg.site_round import RoundConfig, fedavg_dp_steps, train_round


def round_lr(base: float, round: int, rounds: int, decay: str) -> float:
    """The local learning rate of ``round`` (0-based) out of ``rounds``."""
    if decay == "constant":
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * round / rounds))


class FedAvgArm:
    """Federated averaging (FedProx when ``mu > 0``); see ``FedAvgConfig``."""

    private = True

    def __init__(self, config: FedAvgConfig) -> None:
        self.config = config

    def dp_steps(self, n: int, training: TrainSettings, slots: Mapping[str, Any]
                 ) -> tuple[int, int]:
        """Under DP: a site's local epochs in every round, in its local batch size.
        FedProx's proximal term is refused: its gradient is not clipped per example."""
        cfg = self.config
        if cfg.mu > 0:
            raise SynthlearnError("FedProx's proximal term (mu > 0) is not clipped per "
                                  "example: train under DP with mu: 0")
        return fedavg_dp_steps(n, cfg.local_batch_size or training.batch_size,
                               cfg.local_epochs, cfg.rounds)

    def run(self, ctx: ArmContext) -> ArmResult:
        cfg = self.config
        check_site_steps(ctx)  # before any round
        ledger = PrivacyLedger.for_arm(ctx)
        base_lr = cfg.local_lr or ctx.model_component.build().training.lr
        model = ctx.build_model("global")
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        parameters = {name for name, _ in model.named_parameters()}
        sizes = {site.id: len(site.data) for site in ctx.sites}
        by_id = {site.id: site for site in ctx.sites}
        participants = []
        for r in range(cfg.rounds):
            chosen = choose_sites(sorted(by_id), cfg.fraction, ctx.seed_for("choose", r))
            participants.append(chosen)
            task_config = RoundConfig(round=r, local_epochs=cfg.local_epochs,
                                      lr=round_lr(base_lr, r, cfg.rounds, cfg.lr_decay),
                                      mu=cfg.mu, refresh_bn=cfg.refresh_bn,
                                      batch_size=cfg.local_batch_size,
                                      optimizer=cfg.local_optimizer, rounds=cfg.rounds)
            shares = ("model weights after local training, every round"
                      + (" (FedProx)" if cfg.mu > 0 else ""))
            task = SiteTask(f"round-{r}", train_round, task_config, shares, round=r)
            received = ctx.run_sites(task, Payload(state, {"round": r}),
                                     [by_id[s] for s in chosen])
            updates = []
            for sid in chosen:
                source = f"arm {ctx.name}, site {sid}, round {r}"
                check_update(received[sid].tensors, state, source)
                if ledger is not None:
                    ledger.add(sid, received[sid].meta.get("privacy"), source)
                weight = float(sizes[sid]) if cfg.weighting == "examples" else 1.0
                updates.append((received[sid].tensors, weight))
            state = average(state, updates, cfg.server_lr, parameters)
            if (r + 1) % cfg.eval_every == 0 or r == cfg.rounds - 1:
                model.load_state_dict(state)
                ctx.record_round(r, model, sites=chosen)
        model.load_state_dict(state)
        details: dict[str, object] = {
            "rounds": cfg.rounds, "local_epochs": cfg.local_epochs, "mu": cfg.mu,
            "participants": participants,
        }
        details.update(finish_at_sites(ctx, model))
        return ArmResult(model=model, details=details,
                         privacy=None if ledger is None else ledger.summary())
