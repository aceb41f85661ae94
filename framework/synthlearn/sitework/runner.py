"""The in-process runner: site work runs in this Python process, one site at a time.

It still goes through bytes both ways (inbound payload in, serialised payload out), so
what an arm gets back is exactly what a remote site could have sent. Like every runner
it yields each site's result as soon as that site is done (``Runner.execute``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs

from synthlearn.errors import SiteTaskError
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
    ) -> Iterator[tuple[int, bytes]]:
        """Run the task at each site in turn, yielding ``(site id, payload bytes)`` as
        each finishes; a site's exception is raised as ``SiteTaskError``."""
        for site in sites:
            try:
                received = inbound.get(site.id)
                payload_in = (None if received is None
                              else Payload.from_bytes(received, "server"))
                result = task.fn(site, task.config, payload_in, envs[site.id])
                if not isinstance(result, Payload):
                    raise TypeError(f"site task {task.fn_path} returned "
                                    f"{type(result).__name__}, expected "
                                    "synthlearn.api.Payload")
            except Exception as exc:
                raise SiteTaskError(site.id, exc) from exc
            yield site.id, result.to_bytes()
