"""The hook that registers the ``fedavg`` arm with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, hookimpl

from synthlearn_fedavg.arm import FedAvgArm
from synthlearn_fedavg.config import FedAvgConfig


@hookimpl
def synthlearn_register_arms() -> list[ComponentSpec]:
    """The ``fedavg`` arm: its config class, factory and one-line summary."""
    return [
        ComponentSpec("fedavg", FedAvgConfig, FedAvgArm,
                      "federated averaging over rounds (FedProx with mu > 0); weights "
                      "cross both ways every round"),
    ]
