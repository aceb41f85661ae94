"""The hooks that register the ``fedavg`` arm and its site task with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, SiteTaskSpec, hookimpl

from synthlearn_fedavg.arm import FedAvgArm
from synthlearn_fedavg.config import FedAvgConfig


@hookimpl
def synthlearn_register_arms() -> list[ComponentSpec]:
    """The ``fedavg`` arm: its config class, factory and one-line summary."""
    return [
        ComponentSpec("fedavg", FedAvgConfig, FedAvgArm,
                      "federated averaging over rounds (FedProx with mu > 0); weights "
                      "cross both ways every round",
                      slots={"dp": "dp_mechanism"}, slot_defaults={"dp": None}),
    ]


@hookimpl
def synthlearn_register_site_tasks() -> list[SiteTaskSpec]:
    """One round of local training at a site (what a remote site node may run)."""
    from synthlearn_fedavg.site_round import RoundConfig, train_round

    return [SiteTaskSpec(train_round, RoundConfig)]
