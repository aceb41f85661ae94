"""The hook that registers the ``opacus`` DP mechanism with synthlearn (Opacus itself is
imported only when a mechanism is built)."""

from __future__ import annotations

from synthlearn import ComponentSpec, hookimpl

from synthlearn_dp.config import OpacusConfig


def _build(config: OpacusConfig) -> object:
    from synthlearn_dp.mechanism import OpacusMechanism

    return OpacusMechanism(config)


@hookimpl
def synthlearn_register_dp_mechanisms() -> list[ComponentSpec]:
    """``opacus``: DP-SGD with flat or adaptive clipping and an RDP, PRV or GDP accountant."""
    return [
        ComponentSpec("opacus", OpacusConfig, _build,
                      "DP-SGD through Opacus: per-example clipping (flat or adaptive), "
                      "noise planned for the arm's whole budget, rdp/prv/gdp accountant"),
    ]
