"""synthlearn-fedavg: federated averaging (FedAvg, with FedProx as an option) as an arm."""

from synthlearn_fedavg.arm import FedAvgArm
from synthlearn_fedavg.config import FedAvgConfig

__all__ = ["FedAvgArm", "FedAvgConfig"]
