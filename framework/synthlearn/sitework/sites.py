"""Sites and the work that runs at them.

Site work is a module-level function ``fn(site, config, inbound, env) -> Payload``: it
sees one site's data and the arm's config, and returns only what the arm declares will
leave the site. Because it is a plain importable function with a serialisable config, a
distributed runner can run it where the data lives.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import torch

from synthlearn.data.types import AttributeInfo, ImageData, RemoteSiteData
from synthlearn.loading.code_identity import code_versions, module_digest
from synthlearn.sitework.cache import SiteCache, cache_key
from synthlearn.sitework.exchange import Payload

if TYPE_CHECKING:
    import torch.nn as nn

    from synthlearn.interfaces import ModelFactory
    from synthlearn.recipe import Component, ComponentChain


def derive_seed(seed: int, *tags: object) -> int:
    """A seed for one purpose (``derive_seed(0, "site", 2, "local")``), stable across
    runs and machines, independent between purposes."""
    text = "/".join([str(seed), *map(str, tags)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def seeded_model(factory: ModelFactory, seed: int, in_chans: int, num_classes: int,
                 image_size: tuple[int, int]) -> nn.Module:
    """A fresh network whose random initial weights depend only on ``seed``, not on
    whatever ran before it (the global RNG is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory.build(in_chans, num_classes, image_size)


@attrs.define(frozen=True, eq=False)
class Site:
    """One hospital: an id and its private training images (at the server of a
    deployment, ``data: exported``, only their counts and fingerprint:
    ``RemoteSiteData``)."""

    id: int
    data: ImageData | RemoteSiteData


@attrs.define(frozen=True)
class SiteEnv:
    """What a site task may use besides its data: the arm's model recipe and its other
    components (``slots``: the arm's slots, e.g. ``generator`` and ``conditioning``), the
    dataset's shape and phenotype attributes, a seed for this site and task, whether to
    show progress, and the site's own store for work worth keeping (``memo``)."""

    seed: int
    model_component: Component
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    progress: bool = True
    attributes: tuple[AttributeInfo, ...] = ()
    slots: Mapping[str, Component | ComponentChain] = attrs.field(factory=dict)
    store: SiteCache | None = None
    versions: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def model(self) -> Component:
        """Deprecated alias of ``model_component`` (a recipe component, not a network);
        kept for one release."""
        warnings.warn("SiteEnv.model is deprecated: use SiteEnv.model_component",
                      DeprecationWarning, stacklevel=2)
        return self.model_component

    @property
    def parts(self) -> Mapping[str, Component | ComponentChain]:
        """Deprecated alias of ``slots`` (the same word as ``ComponentSpec.slots``);
        kept for one release."""
        warnings.warn("SiteEnv.parts is deprecated: use SiteEnv.slots",
                      DeprecationWarning, stacklevel=2)
        return self.slots

    def memo(self, parts: Mapping[str, Any], compute: Callable[[], Payload], *,
             components: Iterable[Any] | None = None) -> Payload:
        """``compute()``, or its earlier result kept at this site for the same ``parts``.

        For expensive site-side work that several tasks or arms share but that need not
        leave the site (e.g. a fitted generator that one arm sends and another only
        samples from). ``parts`` must identify everything that determines the result
        (config, data fingerprint, seed). The versions and code identities
        (``synthlearn.loading.code_identity``) of the code that computes it are added: the
        core's and those of ``components`` (recipe components, e.g. the generator), or,
        when not given, of every component of the arm, so work that depends only on a
        generator is shared by arms from different plugins; and the identity of the
        package that defines ``compute``. Editing any of that code makes a new entry.
        Kept entries are verified (``SiteCache.get``) before use.
        """
        if self.store is None:
            return compute()
        versions = dict(self.versions) if components is None else code_versions(
            c.registered for c in components)
        source = module_digest(getattr(compute, "__module__", None) or "")
        key = cache_key({"site_memo": dict(parts), "versions": versions,
                         "compute_source": source})
        blob = self.store.get(key)
        if blob is not None:
            return Payload.from_bytes(blob, "site store")
        payload = compute()
        self.store.put(key, payload.to_bytes())
        return payload

    def new_model(self) -> tuple[ModelFactory, nn.Module]:
        """The arm's model factory and a fresh network, initialised from this env's seed."""
        factory = self.model_component.build()
        return factory, seeded_model(factory, self.seed, self.in_chans, self.num_classes,
                                     self.image_size)


SiteFn = Callable[[Site, Any, "Payload | None", SiteEnv], Payload]


@attrs.define(frozen=True)
class SiteTask:
    """A piece of site work: the function, its config, and what it sends to the server.

    ``name`` identifies the task within the arm (e.g. ``train_local`` or ``round-3``);
    ``shares`` says in words what leaves the site (for the report); ``config`` must be
    an attrs instance or JSON-able data, since it is part of the cache key. ``round``
    (0-based) marks a task that is one round of a multi-round arm: a site failing in it
    is reported with that round.
    """

    name: str
    fn: SiteFn
    config: Any
    shares: str
    round: int | None = None

    @property
    def fn_path(self) -> str:
        return f"{self.fn.__module__}:{self.fn.__qualname__}"
