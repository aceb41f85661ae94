"""``check_runner``: the contract of kind ``runner``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthlearn.errors import SiteTaskError
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import SiteEnv, SiteTask
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.recipes import tiny_dataset, tiny_sites
from synthlearn.testing.tasks import EchoConfig, echo

__all__ = ["check_runner"]


def check_runner(runner: Any, *, sites: int = 3) -> None:
    """Check a runner object against the ``Runner`` contract with a module-level site
    task (``synthlearn.testing.tasks.echo``) over tiny phantom sites. Its rules:

    * ``protocol``: it has ``execute``;
    * ``one payload per site asked``: ``execute`` yields (or returns as a dict) bytes for
      exactly the sites given (all of them, or a subset), each once;
    * ``results are the task's payloads``: each parses as a ``Payload`` and is what the
      task computed from that site's own data and env;
    * ``inbound reaches the site``: the inbound bytes arrive at each site's task as the
      server sent them;
    * ``a failing site raises``: a task raising at one site makes ``execute`` raise
      ``SiteTaskError`` naming that site, never return the other sites as if all went
      well.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_runner", runner)
    rules.protocol(runner, ("execute",))
    dataset = tiny_dataset()
    all_sites = tiny_sites(dataset, sites)
    task = SiteTask("check_runner", echo, EchoConfig(), "site id and label sums")
    envs = {s.id: SiteEnv(seed=100 + s.id, model_component=None, num_classes=dataset.num_classes,
                          in_chans=dataset.channels, image_size=dataset.image_size,
                          progress=False) for s in all_sites}
    for chosen in (all_sites, all_sites[1:]):
        ids = [s.id for s in chosen]
        with rules.rule("one payload per site asked"):
            pairs = _pairs(runner.execute(task, chosen, {i: envs[i] for i in ids}, {}))
        out = dict(pairs)
        rules.require(sorted(site for site, _ in pairs) == ids
                      and all(isinstance(b, bytes) for b in out.values()),
                      "one payload per site asked",
                      f"sites {ids} asked, got {_describe(pairs)}")
        for site in chosen:
            with rules.rule("results are the task's payloads"):
                payload = Payload.from_bytes(out[site.id], f"site {site.id}")
            meta, labels = payload.meta, payload.tensors.get("labels")
            rules.require(meta.get("site") == site.id and meta.get("n") == len(site.data)
                          and meta.get("seed") == envs[site.id].seed and labels is not None
                          and np.array_equal(labels.numpy(), site.data.labels),
                          "results are the task's payloads",
                          f"site {site.id}'s result is not its task's output: meta {meta}")
    inbound = {s.id: Payload({"x": torch.full((3,), float(s.id + 1))}).to_bytes()
               for s in all_sites}
    with rules.rule("inbound reaches the site"):
        out = dict(_pairs(runner.execute(task, all_sites, envs, inbound)))
        for site in all_sites:
            got = Payload.from_bytes(out[site.id], f"site {site.id}").tensors.get("doubled")
            want = torch.full((3,), 2.0 * (site.id + 1))
            rules.require(got is not None and torch.equal(got, want),
                          "inbound reaches the site",
                          f"site {site.id} did not get its inbound payload")
    failing = SiteTask("check_runner_fail", echo, EchoConfig(fail_site=all_sites[-1].id),
                       "nothing")
    try:
        _pairs(runner.execute(failing, all_sites, envs, {}))
    except SiteTaskError as exc:
        rules.require(exc.site == all_sites[-1].id, "a failing site raises",
                      f"site {all_sites[-1].id}'s task raised, SiteTaskError names site "
                      f"{exc.site!r}")
        return
    except Exception as exc:
        rules.fail("a failing site raises",
                   f"site {all_sites[-1].id}'s task raised, execute raised "
                   f"{type(exc).__name__}, not SiteTaskError naming the site")
    rules.fail("a failing site raises",
               f"site {all_sites[-1].id}'s task raised, execute returned normally")


def _pairs(returned: Any) -> list[tuple[Any, Any]]:
    """Every ``(site, bytes)`` a runner gave: yielded, or returned as a dict."""
    if isinstance(returned, dict):
        return list(returned.items())
    return [tuple(item) for item in returned]


def _describe(pairs: list[tuple[Any, Any]]) -> str:
    return f"results for sites {[site for site, _ in pairs]}"
