"""The ``synthetic`` arm (CATphishing): sites share generators or synthetic images, never
real ones; the server trains the downstream model on the pooled synthetic images.

Each site summarises its labels and attributes with the arm's conditioning scheme
(aggregate statistics only), fits the arm's generator on its own images once, and sends
either

* ``share: samples``: synthetic images with their labels and attributes, as many as
  ``multiple`` times the site's size (or ``count``), drawn with conditions that follow
  the site's own class and attribute mix; or
* ``share: generator``: the fitted generator's weights and the statistics; the server
  draws the same synthetic images itself.

Both modes draw the same pool for the same seed (the fitted generator is kept at the
site, so switching modes, or a second arm with the same generator, does not refit).
Fitting, drawing and loading are ``synthlearn.generation.sharing``'s, shared with any
arm that synthesises (the ``kr`` plugin's too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.site_privacy import PrivacyLedger
from synthlearn.arms.site_steps import check_site_steps, finish_at_sites
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.generation.conditioning import MAX_IMAGES, check_stats
from synthlearn.generation.filtering import (
    FILTER_SLOT,
    MAX_REDRAW_ROUNDS,
    received_screening,
    refuse_filter_under_dp,
    refuse_filter_without_samples,
    screen_site_pools,
)
from synthlearn.generation.share_size import SyntheticSets
from synthlearn.generation.sharing import (
    PRIVACY_KEY,
    SHARED_FIT_TASK,
    STATISTICS_OUTSIDE_BUDGET,
    checked_n_real,
    describe_slots,
    draw_pool,
    fit_site_generator,
    generator_dp_steps,
    generator_label,
    load_generator,
    pool_subset,
)
from synthlearn.models.training import TrainSettings
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.received import received_count, received_tensor
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask, derive_seed

SHARES: tuple[str, ...] = ("samples", "generator")


@attrs.define(frozen=True)
class SyntheticConfig(SyntheticSets):
    """How much leaves each site, and in what form.

    ``share`` is ``samples`` (synthetic images cross) or ``generator`` (the fitted
    generator crosses and the server samples). Each site contributes ``multiple`` times
    its own number of images (default 1.0) or, when ``count`` is set instead, exactly
    ``count`` images; setting both is an error.

    A ``filter:`` slot (kind ``filter``, e.g. ``{use: reid}`` or ``{use: near-copy}``;
    only with ``share: samples``) screens each site's synthetic images at the site before
    they leave: rejected ones are redrawn with the same conditions, so the pool keeps its
    class mix (``synthlearn.generation.filtering``); the details say, per site, how many
    were drawn and rejected, and why.

    ``regenerate_every: N`` trains the server's model on a fresh synthetic set every N
    epochs (null, the default: one fixed set), so it sees ``ceil(epochs / N)`` sets of
    the same size; with ``share: samples`` each site sends that many sets (the bytes
    grow with them), with ``share: generator`` the server draws them at no extra cost.
    ``pool: K`` (with ``regenerate_every``) draws each site's synthetic images once, as a
    pool K times the size of one set, and every set is a fresh seeded subset of that pool
    (taken at the server in both modes): a slow generator (diffusion) samples once
    instead of once per set, and with ``share: samples`` the pool crosses once.

    ``class_balance: equal`` draws the same number of every class a site has instead of
    following the site's class mix (``site``, the default): a generator can make equal
    classes where the site could not.

    How the server trains and finishes the model (``mixup``, ``label_smoothing``,
    ``adapt_bn``, ``calibrate``) is the model's business, set under ``model.params`` for
    every arm alike (``synthlearn.models.training.TrainSettings``).
    """

    __synthlearn_moved__: ClassVar[dict[str, str]] = {
        **{name: f"$.model.params.{name}"
           for name in ("mixup", "label_smoothing", "adapt_bn", "calibrate")},
        "drop_near_copies": "the arm's filter slot: `filter: {use: near-copy, params: "
                            "{quantile: 0.01}}`"}

    share: str = attrs.field(
        default="samples", validator=attrs.validators.in_(SHARES),
        metadata={"doc": "`samples` (synthetic images cross) or `generator` (the fitted "
                         "generator crosses and the server samples)"})


def pool_sets(pool: ImageData, size: int, sets: int, seed: int) -> list[ImageData]:
    """``sets`` subsets of ``size`` images (at most the pool's) of a site's ``pool``
    (``synthlearn.api.pool_subset``)."""
    return [pool.subset(pool_subset(len(pool), size, seed, index)) for index in range(sets)]


def set_seed(env_seed: int, index: int) -> int:
    """The seed of a site's synthetic set ``index`` (site and server draw alike; set 0
    keeps the seed of the single set drawn without regeneration)."""
    return derive_seed(env_seed, "sample") if index == 0 else derive_seed(
        env_seed, "sample", index)


def set_prefix(index: int) -> str:
    """Tensor-name prefix of set ``index`` in a samples payload (none for set 0)."""
    return "" if index == 0 else f"set.{index}."


def synthesize(site: Site, config: SyntheticConfig, inbound: Payload | None, env: SiteEnv
               ) -> Payload:
    """Site work: summarise, fit the generator (once), send samples or the generator."""
    scheme, stats, state = fit_site_generator(site, env)
    n_real = len(site.data)
    meta: dict[str, Any] = {"share": config.share, "stats": stats, "n_real": n_real,
                            **describe_slots(env.slots)}
    if PRIVACY_KEY in state.meta:  # fitted under DP: the record crosses with the images
        meta[PRIVACY_KEY] = state.meta[PRIVACY_KEY]
    if config.share == "generator":
        return Payload(state.tensors, {**meta, "generator": state.meta})
    generator = load_generator(env.slots["generator"], state, f"site {site.id} generator")
    sets = config.draws_for(env.model_component.build().training.epochs)
    pools = [draw_pool(generator, scheme, stats, config.drawn_for(n_real),
                       set_seed(env.seed, index), label=generator_label(env.slots["generator"]),
                       image_shape=(env.in_chans, *env.image_size),
                       class_balance=config.class_balance)
             for index in range(sets)]
    pools, screening = screen_site_pools(pools, site, env, generator, scheme, stats,
                                         [set_seed(env.seed, i) for i in range(sets)])
    if screening is not None:
        meta[FILTER_SLOT] = screening
    tensors: dict[str, torch.Tensor] = {}
    for index, pool in enumerate(pools):
        prefix = set_prefix(index)
        tensors[f"{prefix}images"] = torch.from_numpy(pool.images)
        tensors[f"{prefix}labels"] = torch.from_numpy(pool.labels)
        for name, values in pool.attributes.items():
            tensors[f"{prefix}attr.{name}"] = torch.from_numpy(values)
    return Payload(tensors, {**meta, "sets": sets})


def _received_pool(payload: Payload, source: str, ctx: ArmContext, index: int = 0
                   ) -> ImageData:
    """Synthetic set ``index`` a site sent, checked against the dataset's shape: uint8
    images, int64 labels in the dataset's classes, float32 attributes, one per image."""
    t, prefix = payload.tensors, set_prefix(index)
    attr = f"{prefix}attr."
    images = received_tensor(t, f"{prefix}images", torch.uint8,
                             (None, ctx.in_chans, *ctx.image_size), source)
    n = len(images)
    labels = received_tensor(t, f"{prefix}labels", torch.int64, (n,), source)
    attributes = {k.removeprefix(attr): received_tensor(t, k, torch.float32, (n,), source)
                  for k in t if k.startswith(attr)}
    if n and (labels.min() < 0 or labels.max() >= ctx.num_classes):
        raise SynthlearnError("synthetic labels outside the dataset's classes", where=source)
    return ImageData(images=images, labels=labels, attributes=attributes)


class SyntheticArm:
    """Train the downstream model on synthetic images pooled from every site."""

    private = True

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config

    def check_slots(self, slots: Mapping[str, Any]) -> None:
        """A filter needs ``share: samples``: a generator that leaves the site cannot be
        screened there."""
        refuse_filter_without_samples(slots, self.config.share)

    def dp_steps(self, n: int, training: TrainSettings, slots: Mapping[str, Any]
                 ) -> tuple[int, int]:
        """Under DP the generator's fit is what trains on the site's images: its
        ``dp_steps``. A filter is refused (it compares the released images with the
        site's own, outside the budget)."""
        refuse_filter_under_dp(slots)
        return generator_dp_steps(slots["generator"], n)

    def dp_models(self, slots: Mapping[str, Any]) -> tuple[str, ...]:
        """Only the generator trains on real images: the model learns from what it
        released (``TrainsOnSynthetic``), so it may keep batch norm and mixup."""
        return ()

    def run(self, ctx: ArmContext) -> ArmResult:
        config = self.config
        check_site_steps(ctx)  # before any work
        ledger = PrivacyLedger.for_arm(ctx)
        shares = ("fitted generator weights and aggregate label/attribute statistics"
                  if config.share == "generator"
                  else "synthetic images with labels/attributes, and aggregate statistics")
        task = SiteTask(SHARED_FIT_TASK, synthesize, config, shares=shares)
        received = ctx.run_sites(task)
        sets = config.sets_for(ctx.model_component.build().training.epochs)
        draws = config.draws_for(ctx.model_component.build().training.epochs)
        pools: list[dict[int, ImageData]] = [{} for _ in range(sets)]
        screenings: dict[int, dict[str, Any]] = {}
        artifacts: dict[str, bytes] = {}
        for site in ctx.sites:
            payload, source = received[site.id], f"arm {ctx.name}, site {site.id}"
            if ledger is not None:
                ledger.add(site.id, payload.meta.get(PRIVACY_KEY), source)
            if config.share == "generator":
                drawn = self._sample_at_server(ctx, site, task, payload, source, draws)
                n_set = config.images_for(int(payload.meta["n_real"]))
                for index, pool in enumerate(self._sets(ctx, site, task, drawn, n_set,
                                                        sets)):
                    pools[index][site.id] = pool
                artifacts[f"site-{site.id}-generator.safetensors"] = payload.to_bytes()
            else:
                if payload.meta.get("sets", 1) != draws:
                    raise SynthlearnError(f"sent {payload.meta.get('sets')!r} synthetic sets, "
                                          f"the server needs {draws}", where=source)
                # checked like everything a site sends (it sizes the sets of a pool)
                n_real = received_count(payload.meta, "n_real", 1, ctx.site_image_limit, source)
                if FILTER_SLOT in ctx.arm.component.slots:
                    screenings[site.id] = received_screening(
                        payload.meta, MAX_IMAGES * draws * (MAX_REDRAW_ROUNDS + 1), source)
                drawn = [_received_pool(payload, source, ctx, index) for index in range(draws)]
                for index, pool in enumerate(self._sets(ctx, site, task, drawn,
                                                        config.images_for(n_real), sets)):
                    pools[index][site.id] = pool
        pooled = [ImageData.concat([by_site[sid] for sid in sorted(by_site)])
                  for by_site in pools]
        if len(pooled[0]) < 2:
            unfilled = sum(record["unfilled"] for record in screenings.values())
            raise SynthlearnError(
                f"only {len(pooled[0])} synthetic images reached the server"
                + (f": the sites' filters rejected {unfilled} candidates even after "
                   f"{MAX_REDRAW_ROUNDS} redraws (the generator copies its training data)"
                   if unfilled else ""))
        if len({len(p) for p in pooled}) > 1:
            raise SynthlearnError("the synthetic sets differ in size: "
                                  + ", ".join(str(len(p)) for p in pooled))

        def redraw(epoch: int) -> tuple[ImageData, np.ndarray | None] | None:
            every = config.regenerate_every
            if every is None or epoch % every:
                return None
            return pooled[epoch // every], None

        model = ctx.train(pooled[0], "synthetic",
                          redraw=redraw if sets > 1 else None,
                          desc="pooled synthetic images"
                          + (f" ({sets} sets)" if sets > 1 else ""))
        details: dict[str, Any] = {
            "share": config.share,
            "n_train": len(pooled[0]),
            "sets": sets,
            **({"pool": config.pool} if config.pool is not None else {}),
            **({"class_balance": config.class_balance}
               if config.class_balance != "site" else {}),
            "generator": ctx.arm.component.slots["generator"].use,
            "conditioning": ctx.arm.component.slots["conditioning"].use,
        }
        details.update(finish_at_sites(ctx, model))
        details["per_site"] = [
            {"site": sid, "n_real": int(received[sid].meta.get("n_real", 0)),
             "n_synthetic": len(pools[0][sid]),
             **({"screening": screenings[sid]} if sid in screenings else {}),
             "class_counts_synthetic": pools[0][sid].class_counts(ctx.num_classes)}
            for sid in sorted(pools[0])
        ]
        privacy = None if ledger is None else ledger.summary([STATISTICS_OUTSIDE_BUDGET])
        return ArmResult(model=model, details=details, synthetic=pools[0],
                         artifacts=artifacts, privacy=privacy)

    def _sets(self, ctx: ArmContext, site: Site, task: SiteTask, drawn: list[ImageData],
              size: int, sets: int) -> list[ImageData]:
        """The sets the model trains on: the drawn ones, or with ``pool`` ``sets`` seeded
        subsets of ``size`` images of the one pool drawn (the same in both share modes)."""
        if self.config.pool is None:
            return drawn
        return pool_sets(drawn[0], size, sets, derive_seed(ctx.site_env(site, task).seed,
                                                           "pool"))

    def _sample_at_server(self, ctx: ArmContext, site: Site, task: SiteTask, payload: Payload,
                          source: str, sets: int) -> list[ImageData]:
        """Load a site's generator and draw the same sets the site would have sent."""
        meta = payload.meta
        if not isinstance(meta.get("generator"), dict):
            raise SynthlearnError("generator payload has no generator metadata", where=source)
        scheme = ctx.arm.component.slots["conditioning"].build()
        stats = meta.get("stats")
        check_stats(scheme, stats, ctx.num_classes, source)  # before anything is sized
        n = self.config.drawn_for(checked_n_real(meta, stats, ctx.site_image_limit, source))
        generator = load_generator(ctx.arm.component.slots["generator"],
                                   Payload(payload.tensors, meta["generator"]), source)
        seed = ctx.site_env(site, task).seed
        return [draw_pool(generator, scheme, stats, n, set_seed(seed, index),
                          label=generator_label(ctx.arm.component.slots["generator"]),
                          image_shape=(ctx.in_chans, *ctx.image_size), where=source,
                          class_balance=self.config.class_balance)
                for index in range(sets)]
