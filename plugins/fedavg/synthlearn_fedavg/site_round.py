"""The site side of a round: train the global model on this site's images, send it back."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
import torch.nn as nn
from synthlearn.api import (
    Payload,
    Site,
    SiteEnv,
    dp_steps_per_epoch,
    load_state,
    refresh_batchnorm,
    site_private_training,
    state_payload,
    train_classifier,
)


@attrs.frozen
class RoundConfig:
    """What a site needs for one round: the round, its local epochs and learning rate,
    FedProx's ``mu`` (0: plain FedAvg), whether to refresh batch-norm statistics before
    sending, the local batch size and optimizer (None: the model's), and the arm's
    number of rounds (under DP the site plans its noise for all of them)."""

    round: int
    local_epochs: int
    lr: float
    mu: float
    refresh_bn: bool = True
    batch_size: int | None = None
    optimizer: str | None = None
    rounds: int | None = None


def proximal_term(mu: float, anchor: dict[str, torch.Tensor]) -> Callable[[nn.Module],
                                                                           torch.Tensor]:
    """FedProx's ``mu/2 * sum ||w - w_anchor||^2`` over a model's trainable parameters."""
    moved: dict[str, torch.Tensor] = {}

    def penalty(model: nn.Module) -> torch.Tensor:
        terms = []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            ref = moved.get(name)
            if ref is None or ref.device != param.device:
                ref = moved[name] = anchor[name].detach().to(param.device, param.dtype)
            terms.append((param - ref).square().sum())
        return 0.5 * mu * torch.stack(terms).sum()

    return penalty


def train_round(site: Site, config: RoundConfig, inbound: Payload | None, env: SiteEnv
                ) -> Payload:
    """Site work for one round: load the global weights the server sent, train
    ``local_epochs`` epochs on this site's images, return the weights and the number of
    images they were trained on. With ``refresh_bn`` the batch-norm running statistics
    are recomputed over the site's images under the final weights first."""
    if inbound is None:
        raise ValueError("a fedavg round needs the global model from the server")
    factory, model = env.new_model()
    load_state(model, inbound, "server")
    settings = attrs.evolve(factory.training, epochs=config.local_epochs, lr=config.lr,
                            schedule="constant",
                            batch_size=config.batch_size or factory.training.batch_size,
                            optimizer=config.optimizer or factory.training.optimizer)
    penalty = proximal_term(config.mu, inbound.tensors) if config.mu > 0 else None
    n = len(site.data)
    private = site_private_training(
        env, n, *fedavg_dp_steps(n, settings.batch_size, config.local_epochs,
                                 config.rounds or config.round + 1))
    train_classifier(model, site.data, settings, env.seed, penalty=penalty, private=private,
                     progress=env.progress,
                     desc=f"round {config.round}: site {site.id}")
    if config.refresh_bn:
        refresh_batchnorm(model, site.data.images, device=settings.device)
    extra = {} if private is None else {"privacy": private.record()}
    return state_payload(model, n=n, round=config.round, **extra)


def fedavg_dp_steps(n: int, batch_size: int, local_epochs: int, rounds: int
                    ) -> tuple[int, int]:
    """Batch size and steps a site of ``n`` images takes under DP over every round."""
    return batch_size, rounds * local_epochs * dp_steps_per_epoch(n, batch_size)
