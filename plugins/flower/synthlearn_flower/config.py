"""Recipe params of ``runner: {use: flower}``."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

import attrs
from synthlearn import input_path_field


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` names this machine (``localhost``, 127.x, ``::1``)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address(_instance: object, attribute: attrs.Attribute, value: Any) -> None:
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{attribute.name}' must be HOST:PORT, got {value!r}")


def _seconds(_instance: object, attribute: attrs.Attribute, value: Any) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"'{attribute.name}' must be a number of seconds > 0, got {value!r}")


def _threads(_instance: object, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise ValueError(f"'{attribute.name}' must be an integer 1 to 256, got {value!r}")


@attrs.frozen
class FlowerConfig:
    """Where the sites' nodes are and how to reach them safely.

    ``mode: simulation`` runs the whole federation on this machine, one process per
    site. In ``deployment`` each site runs ``synthlearn-node --site-file <its file>
    --superlink HOST:PORT``; the SuperLink runs with ``--isolation process`` (the
    synthlearn run is its ServerApp).
    TLS is the default: ``root_certificates`` is the CA that signed the SuperLink's
    certificate; ``insecure: true`` (plain HTTP) is accepted only for a SuperLink on
    this machine.
    """

    mode: str = attrs.field(
        default="deployment", validator=attrs.validators.in_(("deployment", "simulation")),
        metadata={"doc": "`deployment`: the sites' nodes run on their own machines and "
                         "connect to `superlink`; `simulation`: the run starts a SuperLink and "
                         "one synthlearn-node process per site on this machine (plain HTTP on "
                         "localhost; `superlink` and the TLS params are not used)"})
    threads_per_site: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_threads),
        metadata={"doc": "with `simulation`: torch threads of each site's node (null: the "
                         "machine's cores shared out, at least 1)"})
    superlink: str = attrs.field(
        default="127.0.0.1:9093", validator=_address,
        metadata={"doc": "HOST:PORT of the SuperLink (its one HTTP port: Fleet, Control and "
                         "Runtime APIs)"})
    root_certificates: str | None = input_path_field(
        default=None,
        metadata={"doc": "PEM file of the CA that signed the SuperLink's TLS certificate "
                         "(null: the system's CAs)"})
    insecure: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool),
        metadata={"doc": "plain HTTP, no TLS: only for a SuperLink on this machine "
                         "(localhost), e.g. tests and trying it out"})
    connect_timeout_s: float = attrs.field(
        default=120.0, validator=_seconds,
        metadata={"doc": "how long to wait for every site's node to connect before the arm "
                         "stops naming the sites missing"})
    task_timeout_s: float = attrs.field(
        default=6 * 3600.0, validator=_seconds,
        metadata={"doc": "longest a site may take for one task (a fit, a round) before the "
                         "arm stops naming it"})

    def __attrs_post_init__(self) -> None:
        if self.mode == "simulation":
            return  # its own SuperLink on localhost: the connection params do not apply
        if self.threads_per_site is not None:
            raise ValueError("'threads_per_site' is for mode: simulation (a deployed node "
                             "sets its own threads)")
        if self.insecure and not is_loopback(self.superlink):
            raise ValueError(f"'insecure' sends site data and models in plain text: only for "
                             f"a SuperLink on this machine, not {self.superlink}")
        if self.insecure and self.root_certificates is not None:
            raise ValueError("'root_certificates' is for TLS; drop it or 'insecure'")
