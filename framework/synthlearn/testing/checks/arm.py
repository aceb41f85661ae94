"""``check_arm``: the contract of kind ``arm``, run on a real context."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from torch import nn

from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.data.types import ImageData
from synthlearn.execution.run_dir import plain_file_name
from synthlearn.sitework.sites import Site
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.context import make_arm_context

__all__ = ["check_arm"]


class _Watch:
    """Who read a site's images outside site work (the runner's ``execute``)."""

    def __init__(self) -> None:
        self.armed = False
        self.inside = 0
        self.reads: list[str] = []
        self.tasks: list[str] = []  # the site task functions run, by module:qualname

    def note(self) -> None:
        if self.armed and not self.inside:
            frames = [f for f in traceback.extract_stack()[:-3]  # not the containers'
                      if not any(part in f.filename.replace("\\", "/")
                                 for part in ("/synthlearn/testing/", "/synthlearn/data/"))]
            where = frames[-1] if frames else None
            read = f"{where.filename}:{where.lineno} ({where.name})" if where else "?"
            if read not in self.reads:
                self.reads.append(read)


class _WatchedImages(ImageData):
    """A site's images that tell ``_Watch`` when they are read."""

    def __getattribute__(self, name: str) -> Any:
        if name == "images":
            watch = object.__getattribute__(self, "__dict__").get("_watch")
            if watch is not None:
                watch.note()
        return super().__getattribute__(name)


def _watched(sites: list[Site], watch: _Watch) -> list[Site]:
    out = []
    for site in sites:
        data = _WatchedImages(site.data.images, site.data.labels, dict(site.data.attributes))
        object.__setattr__(data, "_watch", watch)
        data.fingerprint()  # computed now: the cache key reads it, not the images
        out.append(Site(site.id, data))
    return out


class _WatchingRunner:
    """The recipe's runner, marking the time spent in site work."""

    def __init__(self, inner: Any, watch: _Watch) -> None:
        self.inner, self.watch = inner, watch

    def execute(self, task: Any, *args: Any, **kwargs: Any) -> Iterator[tuple[int, bytes]]:
        self.watch.tasks.append(task.fn_path)
        returned = self._inside(lambda: self.inner.execute(task, *args, **kwargs))
        results = iter(returned.items() if isinstance(returned, Mapping) else returned)
        while True:  # a runner that yields works while it is asked for the next site
            item = self._inside(lambda: next(results, None))
            if item is None:
                return
            yield item

    def _inside(self, work: Callable[[], Any]) -> Any:
        self.watch.inside += 1
        try:
            return work()
        finally:
            self.watch.inside -= 1


def _run(arm: Any, watch: _Watch, **options: Any) -> tuple[ArmContext, Any]:
    ctx = make_arm_context(arm, sites=lambda found: _watched(found, watch), **options)
    ctx.runner = _WatchingRunner(ctx.runner, watch)
    obj = ctx.arm_object
    watch.armed = bool(getattr(obj, "private", True))
    try:
        return ctx, obj.run(ctx)
    finally:
        watch.armed = False


def _scores(ctx: ArmContext, result: ArmResult) -> list[dict[str, float]]:
    models = [result.model] if result.model is not None else [
        result.site_models[sid] for sid in sorted(result.site_models)]
    return [ctx.evaluate(model) for model in models]


def check_arm(arm: Any, *, slots: Mapping[str, Any] | None = None,
              slot_kinds: Mapping[str, str] | None = None,
              recipe: Mapping[str, Any] | None = None, plugins: Iterable[object] = (),
              tmp_path: Path | str | None = None) -> None:
    """Check an arm against the ``Arm`` contract by running it twice on the context
    :func:`synthlearn.testing.make_arm_context` builds (``recipe``'s data, 3 sites and
    model; default ``small_recipe()``). ``arm`` is an arm object (with ``slots``, e.g.
    ``{"generator": {"use": "gan", "params": {"steps": 4}}}``) or an installed arm's
    name or recipe entry. Its rules:

    * ``protocol``: it has ``run`` and a boolean ``private``;
    * ``run returns an ArmResult``;
    * ``a model to score``: ``model``, or ``site_models`` of existing sites, each a
      ``torch.nn.Module`` the test set can be scored with (finite outputs);
    * ``what crosses is counted``: a private arm gets what it needs from the sites
      through ``ctx.run_sites`` (some bytes reach the server);
    * ``the server never reads a site's images``: a private arm's code outside site
      work does not touch ``site.data.images``;
    * ``synthetic sets and artifacts are well formed``: ``synthetic`` holds the
      dataset's image shape for existing sites, ``artifacts`` are bytes under plain
      file names;
    * ``its site tasks are registered``: every function it runs at the sites is
      registered through ``synthlearn_register_site_tasks`` (``SiteTaskSpec``), so a
      remote runner's nodes may run it;
    * ``same seed, same numbers``: a second run on a fresh context gives the same test
      figures and byte counts.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    options = {"slots": slots, "slot_kinds": slot_kinds, "recipe": recipe,
               "plugins": list(plugins), "tmp_path": tmp_path}
    subject = arm if not isinstance(arm, (str, Mapping)) else None
    label = None if subject is not None else (arm if isinstance(arm, str) else arm["use"])
    rules = Rules("check_arm", subject, label)
    if subject is not None:
        rules.protocol(subject, ("run",), ("private",))
        rules.require(isinstance(subject.private, bool), "protocol",
                      f"private is {type(subject.private).__name__}, expected bool")
    watch = _Watch()
    with rules.rule("run returns an ArmResult"):
        ctx, result = _run(arm, watch, **options)
    rules.require(isinstance(result, ArmResult), "run returns an ArmResult",
                  f"run returned {type(result).__name__}")
    site_ids = {s.id for s in ctx.sites}
    models = [result.model] if result.model is not None else list(result.site_models.values())
    rules.require(models and all(isinstance(m, nn.Module) for m in models)
                  and set(result.site_models) <= site_ids, "a model to score",
                  f"model {type(result.model).__name__}, site_models for sites "
                  f"{sorted(result.site_models)} (sites {sorted(site_ids)})")
    with rules.rule("a model to score"):
        first = _scores(ctx, result)
    private = bool(ctx.arm_object.private)
    rules.require(not private or ctx.ledger.bytes_to_server > 0, "what crosses is counted",
                  "a private arm ran no site work through ctx.run_sites (0 bytes reached "
                  "the server)")
    rules.require(not watch.reads, "the server never reads a site's images",
                  f"site images read outside site work at {watch.reads[:3]}")
    registered = {spec.path for specs in ctx.hook.synthlearn_register_site_tasks()
                  for spec in specs or []}
    unregistered = sorted(set(watch.tasks) - registered)
    rules.require(not unregistered, "its site tasks are registered",
                  f"{unregistered[:3]} ran at the sites without a SiteTaskSpec from "
                  "synthlearn_register_site_tasks: a remote site node would refuse it")
    shape = (ctx.in_chans, *ctx.image_size)
    bad = [sid for sid, data in result.synthetic.items()
           if sid not in site_ids or not isinstance(data, ImageData)
           or data.images.shape[1:] != shape]
    bad_files = [name for name, blob in result.artifacts.items()
                 if not plain_file_name(name) or not isinstance(blob, bytes)]
    rules.require(not bad and not bad_files, "synthetic sets and artifacts are well formed",
                  f"synthetic sets of sites {bad} (images {shape} expected), artifacts "
                  f"{bad_files}")

    second_ctx, second = _run(arm, _Watch(), **options)
    again = _scores(second_ctx, second) if isinstance(second, ArmResult) else None
    same_bytes = attrs.asdict(second_ctx.ledger) == attrs.asdict(ctx.ledger)
    rules.require(again is not None and _close(first, again) and same_bytes,
                  "same seed, same numbers",
                  f"first run {first} ({ctx.ledger.bytes_to_server} bytes to the server), "
                  f"second {again} ({second_ctx.ledger.bytes_to_server} bytes)")


def _close(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.keys() != y.keys():
            return False
        for key in x:
            u, v = x[key], y[key]
            if not (u == v or (np.isnan(u) and np.isnan(v))):
                return False
    return True
