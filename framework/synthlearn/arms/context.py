"""The context an arm runs in: its sites, a way to run site work, server-side training
and evaluation.

An arm never sees the test images: ``evaluate`` scores a model on them and returns only
the numbers. Site work goes through ``run_sites``, which consults the site-output cache,
hands the missing sites to the runner, and counts every byte that crosses.
"""

from __future__ import annotations

import hashlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch.nn as nn

from synthlearn.data.types import AttributeInfo, ImageData
from synthlearn.errors import SiteFailure, SiteTaskError, SynthlearnError
from synthlearn.loading.code_identity import module_digest
from synthlearn.models.training import TrainSettings, train_classifier
from synthlearn.params import make_converter
from synthlearn.sitework.cache import SiteCache, cache_key
from synthlearn.sitework.exchange import Ledger, Payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask, derive_seed, seeded_model


def _cause(exc: Exception) -> BaseException | None:
    """What a run_sites error chains to: nothing for a user's mistake (a
    ``SynthlearnError``: one line is the whole story), else the site's own exception."""
    error = exc.error if isinstance(exc, SiteTaskError) else exc
    return None if isinstance(error, SynthlearnError) else error


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


if TYPE_CHECKING:
    from synthlearn.interfaces import Runner
    from synthlearn.recipe import Arm, Component


@attrs.define
class ArmResult:
    """What an arm hands to the evaluator.

    ``model`` is the one server-side model (centralized, FedAvg, synthetic); arms that end
    with one model per site (local) put them in ``site_models`` instead, and the arm is
    scored by the mean over sites. ``details`` is arm-specific JSON for metrics.json
    (e.g. per-round figures). Arms that train on synthetic images put each site's
    synthetic set in ``synthetic``: the evaluator scores its fidelity against the real
    test set and the report shows it beside the site's real images. ``artifacts`` are
    files (name -> bytes, safetensors or JSON) kept in the run directory under
    ``artifacts/<arm>/``, e.g. the generators a site sent. ``privacy`` is a DP arm's
    guarantee (``PrivacyLedger.summary()``; None: the arm has no DP mechanism).
    """

    model: nn.Module | None = None
    site_models: dict[int, nn.Module] = attrs.field(factory=dict)
    details: dict[str, Any] = attrs.field(factory=dict)
    synthetic: dict[int, ImageData] = attrs.field(factory=dict)
    artifacts: dict[str, bytes] = attrs.field(factory=dict)
    privacy: dict[str, Any] | None = None


@attrs.define
class ArmContext:
    """Everything one arm may use. Built by the run for each arm in turn.

    ``hook`` is what the event hooks are called through: the run passes
    ``PluginSet.events`` (read-only copies, a failing hook is a warning naming its
    distribution: ``synthlearn.loading.events``); the membership audit passes a silent
    one."""

    arm: Arm
    arm_object: Any
    seed: int
    sites: list[Site]
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    runner: Runner
    cache: SiteCache | None
    hook: Any
    evaluator: Callable[[nn.Module], dict[str, float]]
    progress: bool = True
    ledger: Ledger = attrs.field(factory=Ledger)
    versions: Mapping[str, str] = attrs.field(factory=dict)
    attributes: tuple[AttributeInfo, ...] = ()
    curve: list[dict[str, Any]] = attrs.field(factory=list)
    synthetic_scorer: Callable[[np.ndarray], dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return self.arm.name

    @property
    def model_component(self) -> Component:
        """The recipe component of the downstream model this arm trains (the recipe's
        ``model``, or the arm's own): ``.build()`` gives its ``ModelFactory``."""
        return self.arm.model

    @property
    def pooling(self) -> Any:
        """Deprecated alias of ``arm_object``; kept for one release."""
        warnings.warn("ArmContext.pooling is deprecated: use ArmContext.arm_object",
                      DeprecationWarning, stacklevel=2)
        return self.arm_object

    @property
    def model(self) -> Component:
        """Deprecated alias of ``model_component`` (it is a recipe component, not a
        network); kept for one release."""
        warnings.warn("ArmContext.model is deprecated: use ArmContext.model_component",
                      DeprecationWarning, stacklevel=2)
        return self.arm.model

    @property
    def site_image_limit(self) -> int:
        """The most images a site can claim (every training image the server split into
        sites): the bound for a count a site sends, before it sizes anything."""
        from synthlearn.generation.conditioning import MAX_IMAGES

        return sum(len(site.data) for site in self.sites) or MAX_IMAGES

    def seed_for(self, *tags: object) -> int:
        """A seed for one purpose within this arm."""
        return derive_seed(self.seed, self.arm.component.use, *tags)

    def site_env(self, site: Site, task: SiteTask) -> SiteEnv:
        return SiteEnv(
            seed=derive_seed(self.seed, "site", site.id, task.name),
            model_component=self.model_component,
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            image_size=self.image_size,
            progress=self.progress,
            attributes=self.attributes,
            slots=self.arm.component.slots,
            store=self.cache,
            versions=self.versions,
        )

    def _key(self, task: SiteTask, site: Site, inbound: bytes | None) -> str:
        conv = make_converter()
        config = conv.unstructure(task.config)
        return cache_key({
            "task": task.fn_path,
            "name": task.name,
            "config": config,
            "model": self.model_component.to_dict(conv),
            "parts": {k: c.to_dict(conv) for k, c in self.arm.component.slots.items()},
            "site": site.id,
            "data": site.data.fingerprint(),
            "seed": derive_seed(self.seed, "site", site.id, task.name),
            "inbound": None if inbound is None else hashlib.sha256(inbound).hexdigest(),
            "shape": [self.num_classes, self.in_chans, list(self.image_size)],
            "versions": dict(self.versions),  # with code identities: see code_identity
            "task_source": module_digest(task.fn.__module__),
        })

    def run_sites(
        self,
        task: SiteTask,
        inbound: Payload | Mapping[int, Payload] | None = None,
        sites: list[Site] | None = None,
    ) -> dict[int, Payload]:
        """Run ``task`` at every site (or the given ones) and return what came back.

        ``inbound`` is what the server sends first: one payload for all sites, or one per
        site; it is counted in ``bytes_to_sites``. Payloads found in the cache (verified
        against their digest and key, ``SiteCache.get``) are not recomputed (they still
        count as having crossed). The other sites go to the runner all at once, and each
        result is cached, counted and announced (``synthlearn_on_site_done``) as it
        arrives, so a site that finished is kept even if another fails.
        """
        sites = self.sites if sites is None else sites
        if isinstance(inbound, Payload):
            blob = inbound.to_bytes()
            inbound_bytes = {site.id: blob for site in sites}
        elif inbound is not None:
            inbound_bytes = {sid: p.to_bytes() for sid, p in inbound.items()}
        else:
            inbound_bytes = {}
        self.ledger.note_shared(task.shares)
        keys = {s.id: self._key(task, s, inbound_bytes.get(s.id)) for s in sites}
        out: dict[int, bytes] = {}
        for site in sites:
            cached = self.cache.get(keys[site.id]) if self.cache else None
            if cached is not None:
                out[site.id] = cached
                self.ledger.cached_sites += 1
                self._crossed(task, site.id, inbound_bytes.get(site.id), cached, True, 0.0)
        todo = [s for s in sites if s.id not in out]
        if todo:  # all at once: a runner that can runs them in parallel
            start = time.perf_counter()
            envs = {site.id: self.site_env(site, task) for site in todo}
            asked = {site.id: inbound_bytes[site.id] for site in todo
                     if site.id in inbound_bytes}
            for sid, blob in self._results(task, todo, envs, asked):
                if self.cache is not None:  # kept as soon as it exists
                    self.cache.put(keys[sid], blob)
                out[sid] = blob
                self._crossed(task, sid, inbound_bytes.get(sid), blob, False,
                              time.perf_counter() - start)
        return {sid: Payload.from_bytes(out[sid], f"site {sid}") for sid in sorted(out)}

    def _results(self, task: SiteTask, todo: list[Site], envs: dict[int, SiteEnv],
                 inbound: dict[int, bytes]) -> Iterator[tuple[int, bytes]]:
        """The runner's ``(site id, bytes)`` for every site of ``todo``, as each arrives;
        a site's failure, a result for a site not asked (or twice) and a site never
        answered are errors naming the arm, the site and the round or task."""
        by_id = {site.id: site for site in todo}
        waiting = set(by_id)
        try:
            returned = self.runner.execute(task, todo, envs, inbound)
            # a runner may return a mapping (all sites at the end) or yield as sites finish
            results = iter(returned.items() if isinstance(returned, Mapping) else returned)
        except Exception as exc:
            raise self._failure(task, by_id, exc) from _cause(exc)
        while True:
            try:
                item = next(results, None)
            except Exception as exc:
                raise self._failure(task, by_id, exc) from _cause(exc)
            if item is None:
                break
            sid, blob = item
            if sid not in waiting:
                raise SiteFailure(f"the runner returned a result for site {sid!r}, which was "
                                  f"{'answered already' if sid in by_id else 'not asked'}",
                                  where=self._where(task, None))
            if not isinstance(blob, bytes):
                raise SiteFailure(f"the runner returned {type(blob).__name__}, not payload "
                                  "bytes", where=self._where(task, by_id[sid]))
            waiting.discard(sid)
            yield sid, blob
        if waiting:
            first = by_id[min(waiting)]
            raise SiteFailure("the runner returned no result for this site"
                              + (f" (nor for sites {sorted(waiting - {first.id})})"
                                 if len(waiting) > 1 else ""),
                              where=self._where(task, first))

    def _failure(self, task: SiteTask, by_id: dict[int, Site], exc: Exception
                 ) -> SynthlearnError:
        """The one-line error for a runner's exception: the site's own ``SynthlearnError``
        or a ``SiteFailure``, naming the site when the runner said which one failed (or
        when only one was running)."""
        if isinstance(exc, SiteTaskError):
            site, error = by_id.get(exc.site), exc.error
        else:
            site = next(iter(by_id.values())) if len(by_id) == 1 else None
            error = exc
        where = self._where(task, site)
        if isinstance(error, SynthlearnError):
            return SynthlearnError(str(error), where=where)
        return SiteFailure(f"site failed: {type(error).__name__}: {_first_line(error)}",
                           where=where)

    def _where(self, task: SiteTask, site: Site | None) -> str:
        step = f"round {task.round}" if task.round is not None else f"task {task.name}"
        return f"arm {self.name}, " + (f"site {site.id}, " if site else "") + step

    def record_round(self, round: int, model: nn.Module | None = None,
                     **extra: Any) -> dict[str, Any]:
        """Mark the end of round ``round`` (0-based) of a multi-round arm.

        Scores ``model`` (the server's model after the round, when given) on the test
        set, notes the bytes crossed so far in both directions, calls the
        ``synthlearn_on_round_end`` hook and keeps the point for ``arms[i].curve`` in
        metrics.json and the accuracy-against-bytes figure. ``extra`` (JSON-able) is
        kept with the point, e.g. the sites that took part. Returns the point.
        """
        point: dict[str, Any] = {"round": int(round)}
        if model is not None:
            point.update(self.evaluate(model))
        point["bytes_to_server"] = self.ledger.bytes_to_server
        point["bytes_to_sites"] = self.ledger.bytes_to_sites
        point.update(extra)
        self.curve.append(point)
        if self.progress:
            score = (f"accuracy {point['accuracy']:.3f}, "
                     if isinstance(point.get("accuracy"), float) else "")
            print(f"  {self.name}: round {round}: {score}"
                  f"{point['bytes_to_server'] + point['bytes_to_sites']:,} bytes so far",
                  file=sys.stderr, flush=True)
        self.hook.synthlearn_on_round_end(arm=self.name, round=int(round), metrics=dict(point))
        return point

    def _crossed(self, task: SiteTask, site: int, inbound: bytes | None, outbound: bytes,
                 cached: bool, wall_s: float) -> None:
        if inbound is not None:
            self.ledger.to_site(site, len(inbound))
        self.ledger.to_server(site, len(outbound))
        self.hook.synthlearn_on_site_done(
            arm=self.name, site=site,
            outputs={"task": task.name, "bytes": len(outbound), "cached": cached,
                     "wall_s": wall_s},
        )

    def build_model(self, *tags: object) -> nn.Module:
        """A fresh downstream model for this dataset's shape, initialised from ``tags``."""
        return seeded_model(self.model_component.build(), self.seed_for("init", *tags),
                            self.in_chans, self.num_classes, self.image_size)

    @property
    def training(self) -> TrainSettings:
        """How this arm's downstream model is trained and finished (the model's
        ``TrainSettings``: every arm of a recipe reads the same ones unless it brings
        its own ``model:``)."""
        return self.model_component.build().training

    def train(self, data: ImageData, *tags: object, soft_targets: np.ndarray | None = None,
              redraw: Callable[[int], tuple[ImageData, np.ndarray | None] | None] | None = None,
              desc: str = "server") -> nn.Module:
        """Train a fresh downstream model at the server on ``data`` (seeded by ``tags``)
        with the model's training settings (mixup and label smoothing included).

        ``soft_targets`` and ``redraw`` are those of
        ``synthlearn.models.training.train_classifier`` (distillation targets, a fresh training
        set per epoch). An error in the training (e.g. it diverged) names this arm."""
        model = self.build_model(*tags)
        try:
            return train_classifier(model, data, self.training, self.seed_for("train", *tags),
                                    soft_targets=soft_targets, redraw=redraw,
                                    progress=self.progress, desc=f"{self.name}: {desc}")
        except SynthlearnError as exc:
            raise SynthlearnError(str(exc), where=f"arm {self.name}, server ({desc})") from None

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Accuracy, balanced accuracy and AUC of ``model`` on the real test set."""
        return self.evaluator(model)

    def score_synthetic(self, images: np.ndarray) -> dict[str, Any]:
        """Fidelity of synthetic uint8 images (N, C, H, W) to the real test images, as
        for every synthetic arm's pool (``synthlearn.evaluation.fidelity.fidelity``: fd,
        precision, recall, realism): e.g. an arm's generator after each round, for
        ``record_round(..., **figures)``. The test images never leave the core."""
        if self.synthetic_scorer is None:
            raise SynthlearnError("synthetic images cannot be scored in this context (no "
                                  "held-out real images)")
        return self.synthetic_scorer(images)
