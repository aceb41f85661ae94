"""The in-process runner: site work runs in this Python process, one site at a time.

It still goes through bytes both ways (inbound payload in, serialised payload out), so
what an arm gets back is exactly what a remote site could have sent.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask


@attrs.define(frozen=True)
class LocalRunnerConfig:
    """The local runner takes no settings yet."""


class LocalRunner:
    """Runs each site's task in-process."""

    def __init__(self, config: LocalRunnerConfig | None = None) -> None:
        self.config = config or LocalRunnerConfig()

    def execute(
        self,
        task: SiteTask,
        sites: list[Site],
        envs: Mapping[int, SiteEnv],
        inbound: Mapping[int, bytes],
    ) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for site in sites:
            received = inbound.get(site.id)
            payload_in = None if received is None else Payload.from_bytes(received, "server")
            result = task.fn(site, task.config, payload_in, envs[site.id])
            if not isinstance(result, Payload):
                raise TypeError(f"site task {task.fn_path} returned {type(result).__name__}, "
                                "expected synthlearn.sitework.exchange.Payload")
            out[site.id] = result.to_bytes()
        return out
