"""The hooks that register the ``gan`` generator, the ``fedgan`` arm and its site tasks
with synthlearn."""

from __future__ import annotations

from synthlearn import ComponentSpec, SiteTaskSpec, hookimpl

from synthlearn_gan.config import GanConfig
from synthlearn_gan.fedgan import FedGanArm, FedGanConfig
from synthlearn_gan.generator import GanGenerator


@hookimpl
def synthlearn_register_generators() -> list[ComponentSpec]:
    """The ``gan`` generator: its config class, factory and one-line summary."""
    return [
        ComponentSpec("gan", GanConfig, GanGenerator,
                      "conditional DCGAN: hinge loss, spectral-norm projection D with "
                      "minibatch std, EMA generator"),
    ]


@hookimpl
def synthlearn_register_arms() -> list[ComponentSpec]:
    """The ``fedgan`` arm: one gan trained by federated averaging across the sites."""
    return [
        ComponentSpec("fedgan", FedGanConfig, FedGanArm,
                      "FedGAN: the sites train one conditional gan by federated averaging "
                      "of both networks; the server trains on its samples",
                      slots={"generator": "generator", "conditioning": "conditioning",
                             "dp": "dp_mechanism"},
                      slot_defaults={"generator": "gan", "conditioning": "categorical",
                                     "dp": None}),
    ]


@hookimpl
def synthlearn_register_site_tasks() -> list[SiteTaskSpec]:
    """The fedgan arm's site work: the statistics once, then one round of gan steps."""
    from synthlearn_gan.federated import FedGanRound, fedgan_round, site_summary

    return [SiteTaskSpec(site_summary, None), SiteTaskSpec(fedgan_round, FedGanRound)]
