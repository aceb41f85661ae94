"""The hook that registers the membership-inference attacks with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, hookimpl

from synthlearn_mia.attacks import LiraAttack, LossAttack, RmiaAttack
from synthlearn_mia.config import LiraConfig, LossConfig, RmiaConfig


@hookimpl
def synthlearn_register_attacks() -> list[ComponentSpec]:
    """The ``loss``, ``lira`` and ``rmia`` attacks."""
    return [
        ComponentSpec("loss", LossConfig, LossAttack,
                      "loss threshold: members have lower loss (no reference models)"),
        ComponentSpec("lira", LiraConfig, LiraAttack,
                      "likelihood-ratio attack on the scaled logit (Carlini et al. 2022)"),
        ComponentSpec("rmia", RmiaConfig, RmiaAttack,
                      "offline RMIA with its a parameter (Zarifzadeh et al. 2024)"),
    ]
