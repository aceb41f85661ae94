"""The ``kr`` arm: knowledge recycling across sites.

The server's student learns from synthetic images only. Their targets mix the teachers'
softened predictions with the label each image was generated for
(``synthlearn_kr.targets``), and a fresh synthetic set replaces the last one every
``regenerate_every`` epochs (``synthlearn.api.train_classifier``'s ``redraw``).
Where the sets come from depends on ``share``: the server draws and labels them with the
generators and teachers the sites sent (``models``), or the sites sent them ready
(``samples``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from synthlearn.api import (
    FILTER_SLOT,
    MAX_IMAGES,
    MAX_REDRAW_ROUNDS,
    STATISTICS_OUTSIDE_BUDGET,
    ArmContext,
    ArmResult,
    ImageData,
    Payload,
    PrivacyLedger,
    SiteTask,
    SynthlearnError,
    TrainSettings,
    check_site_steps,
    check_stats,
    checked_n_real,
    derive_seed,
    draw_pool,
    finish_at_sites,
    generator_label,
    load_generator,
    load_state,
    pool_subset,
    predict_logits,
    received_screening,
    received_tensor,
    refuse_filter_under_dp,
    refuse_filter_without_samples,
    seeded_model,
)

from synthlearn_kr.config import KRConfig
from synthlearn_kr.site_work import (
    TASK,
    SiteWork,
    kr_dp_phases,
    label,
    prepare,
    set_seed,
    teacher_seed,
    unprefixed,
)
from synthlearn_kr.targets import agreement, student_targets, teacher_probabilities

SHARED = {
    "models": "fitted generator weights, the site's teacher classifier weights and aggregate "
              "label/attribute statistics",
    "samples": "pre-drawn synthetic sets (images, conditioning labels, the site teacher's "
               "logits), one per regeneration; generator and teacher stay at the site",
}
ARTEFACTS = {"models": ["generator", "teacher"], "samples": ["synthetic sets with logits"]}

#: One synthetic set from one site: images, the labels they were drawn for, and the
#: logits of each teacher that labelled them (site id -> (N, K)).
SiteSet = tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]


class KRArm:
    """Train the downstream model on teacher-labelled synthetic sets, redrawn as it trains."""

    private = True

    def __init__(self, config: KRConfig) -> None:
        self.config = config

    def check_slots(self, slots: Mapping[str, Any]) -> None:
        """A filter needs ``share: samples``: a generator that leaves the site cannot be
        screened there."""
        refuse_filter_without_samples(slots, self.config.share)

    def dp_steps(self, n: int, training: TrainSettings, slots: Mapping[str, Any]
                 ) -> dict[str, tuple[int, int]]:
        """Under DP a site trains two things on its images, its teacher (the ``teacher:``
        model's epochs, else the arm model's) and its generator: two phases under one
        budget. A filter is refused (it compares the released images with the site's
        own, outside the budget)."""
        refuse_filter_under_dp(slots)
        teacher = slots.get("teacher")
        return kr_dp_phases(n, teacher.build().training if teacher is not None else training,
                            slots["generator"])

    def dp_models(self, slots: Mapping[str, Any]) -> tuple[str, ...]:
        """The teacher trains on the site's images: the ``teacher:`` model, or else the
        arm's model. A student with a teacher of its own learns only from released
        images and the DP teacher's labels, so it may keep batch norm and mixup."""
        return ("teacher",) if "teacher" in slots else ("model",)

    def run(self, ctx: ArmContext) -> ArmResult:
        config = self.config
        check_site_steps(ctx)  # before any work
        ledger = PrivacyLedger.for_arm(ctx)
        epochs = ctx.training.epochs
        smoothing = ctx.training.label_smoothing
        work = SiteWork(config, config.sets_for(epochs))
        task = SiteTask(TASK, prepare, work, shares=SHARED[config.share])
        received = ctx.run_sites(task)
        if ledger is not None:
            for sid, payload in sorted(received.items()):
                ledger.add_phases(sid, payload.meta.get("privacy"),
                                  f"arm {ctx.name}, site {sid}")
        seeds = {site.id: ctx.site_env(site, task).seed for site in ctx.sites}
        source: ModelsSource | SamplesSource | PooledSource
        if config.share == "models":
            source = ModelsSource(ctx, config, received, seeds)
        else:
            source = SamplesSource(ctx, work, received, seeds)
        if config.pool is not None:
            source = PooledSource(source, config.pool, seeds)

        first = source.draw(0)
        agreements = [self._agreement(first)]

        def redraw(epoch: int) -> tuple[ImageData, np.ndarray] | None:
            index = config.set_for_epoch(epoch)
            if index is None:
                return None
            site_sets = source.draw(index)
            agreements.append(self._agreement(site_sets))
            return self._training_set(site_sets, smoothing)

        data, targets = self._training_set(first, smoothing)
        model = ctx.train(data, "kr", soft_targets=targets, redraw=redraw,
                          desc=f"student on {work.sets} synthetic set(s)")
        finished = finish_at_sites(ctx, model)
        synthetic = {sid: ImageData(images=images, labels=labels)
                     for sid, (images, labels, _) in first.items()}
        details: dict[str, Any] = {
            "share": config.share,
            "labels": config.labels,
            "sets": work.sets,
            **({"pool": config.pool} if config.pool is not None else {}),
            **({"class_balance": config.class_balance}
               if config.class_balance != "site" else {}),
            "n_train": len(data),
            "images_seen": len(data) * epochs,
            "generator": ctx.arm.component.slots["generator"].use,
            "conditioning": ctx.arm.component.slots["conditioning"].use,
            "teacher_agreement": float(np.mean([a["all"] for a in agreements])),
            "per_site": [
                {"site": sid, "n_real": int(received[sid].meta.get("n_real", 0)),
                 "n_synthetic_per_set": len(first[sid][0]),
                 "class_counts_synthetic": synthetic[sid].class_counts(ctx.num_classes),
                 "left_the_site": ARTEFACTS[config.share],
                 "teacher_agreement": agreements[0][sid],
                 **source.site_details(sid)}
                for sid in sorted(first)
            ],
        }
        details.update(finished)
        privacy = None if ledger is None else ledger.summary([STATISTICS_OUTSIDE_BUDGET])
        return ArmResult(model=model, details=details, synthetic=synthetic,
                         artifacts=source.artifacts(), privacy=privacy)

    def _training_set(self, site_sets: dict[int, SiteSet], smoothing: float
                      ) -> tuple[ImageData, np.ndarray]:
        """All sites' images of one set, in site order, with the student's targets."""
        config = self.config
        order = sorted(site_sets)
        images = np.concatenate([site_sets[s][0] for s in order])
        labels = np.concatenate([site_sets[s][1] for s in order]).astype(np.int64)
        probs = np.concatenate([
            teacher_probabilities([site_sets[s][2][t] for t in sorted(site_sets[s][2])],
                                  config.temperature)
            for s in order])
        targets = student_targets(labels, probs, config.alpha, smoothing)
        return ImageData(images=images, labels=labels), targets

    def _agreement(self, site_sets: dict[int, SiteSet]) -> dict[Any, float]:
        out: dict[Any, float] = {}
        labels, probs = [], []
        for sid, (_, site_labels, logits) in sorted(site_sets.items()):
            p = teacher_probabilities(list(logits.values()), 1.0)
            out[sid] = agreement(site_labels, p)
            labels.append(site_labels)
            probs.append(p)
        out["all"] = agreement(np.concatenate(labels), np.concatenate(probs))
        return out


def _check_set(images: np.ndarray, labels: np.ndarray, logits: np.ndarray, ctx: ArmContext,
               source: str) -> None:
    """A received or drawn set must fit the dataset: image shape, labels, finite logits."""
    expected = (ctx.in_chans, *ctx.image_size)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise SynthlearnError(f"synthetic images have shape {images.shape[1:]}, the "
                              f"dataset's are {expected}", where=source)
    if len(labels) != len(images) or logits.shape != (len(images), ctx.num_classes):
        raise SynthlearnError(f"{len(images)} images came with {len(labels)} labels and "
                              f"logits of shape {tuple(logits.shape)}", where=source)
    if len(labels) and (labels.min() < 0 or labels.max() >= ctx.num_classes):
        raise SynthlearnError("synthetic labels outside the dataset's classes", where=source)
    if not np.isfinite(logits).all():
        raise SynthlearnError("teacher logits are not finite", where=source)


class ModelsSource:
    """Sets drawn at the server from the generators and teachers the sites sent."""

    def __init__(self, ctx: ArmContext, config: KRConfig, received: dict[int, Payload],
                 seeds: dict[int, int]) -> None:
        self.ctx, self.config, self.received, self.seeds = ctx, config, received, seeds
        slots = ctx.arm.component.slots
        teacher_factory = (slots.get("teacher") or ctx.model_component).build()
        self.generators: dict[int, Any] = {}
        self.teachers: dict[int, nn.Module] = {}
        self.stats: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}
        scheme = slots["conditioning"].build()
        limit = ctx.site_image_limit
        for sid, payload in sorted(received.items()):
            source = f"arm {ctx.name}, site {sid}"
            meta = payload.meta
            if not isinstance(meta.get("generator"), dict) or "stats" not in meta:
                raise SynthlearnError("kr models payload has no generator metadata or "
                                      "statistics", where=source)
            # statistics and image count checked before they size anything
            check_stats(scheme, meta["stats"], ctx.num_classes, source)
            self.sizes[sid] = config.drawn_for(
                checked_n_real(meta, meta["stats"], limit, source))
            self.generators[sid] = load_generator(
                slots["generator"], Payload(unprefixed("generator", payload.tensors),
                                            meta["generator"]), f"{source} generator")
            teacher = seeded_model(teacher_factory, 0, ctx.in_chans, ctx.num_classes,
                                   ctx.image_size)
            self.teachers[sid] = load_state(
                teacher, Payload(unprefixed("teacher", payload.tensors)), f"{source} teacher")
            self.stats[sid] = meta["stats"]
        self.scheme = scheme
        self.teacher_scores = {sid: ctx.evaluate(t) for sid, t in self.teachers.items()}

    def draw(self, index: int) -> dict[int, SiteSet]:
        out: dict[int, SiteSet] = {}
        for sid, generator in self.generators.items():
            source = f"arm {self.ctx.name}, site {sid}"
            pool = draw_pool(generator, self.scheme, self.stats[sid], self.sizes[sid],
                             set_seed(self.seeds[sid], index),
                             label=generator_label(self.ctx.arm.component.slots["generator"]),
                             image_shape=(self.ctx.in_chans, *self.ctx.image_size),
                             where=source, class_balance=self.config.class_balance)
            labellers = self.teachers if self.config.labels == "ensemble" else {
                sid: self.teachers[sid]}
            logits = {t: predict_logits(model, pool.images) for t, model in labellers.items()}
            _check_set(pool.images, pool.labels, logits[sid], self.ctx, source)
            out[sid] = (pool.images, pool.labels, logits)
        return out

    def site_details(self, sid: int) -> dict[str, Any]:
        score = self.teacher_scores[sid]
        return {"teacher_accuracy": score.get("accuracy"), "teacher_auc": score.get("auc")}

    def artifacts(self) -> dict[str, bytes]:
        return {f"site-{sid}-generator-and-teacher.safetensors": payload.to_bytes()
                for sid, payload in sorted(self.received.items())}


class SamplesSource:
    """Sets the sites drew and labelled themselves; with ``labels: ensemble`` every set
    also goes to the other sites to be labelled by their teachers (one more exchange)."""

    def __init__(self, ctx: ArmContext, work: SiteWork, received: dict[int, Payload],
                 seeds: dict[int, int]) -> None:
        self.sets: dict[int, list[SiteSet]] = {}
        self.screenings: dict[int, dict[str, Any]] = {}
        for sid, payload in sorted(received.items()):
            source = f"arm {ctx.name}, site {sid}"
            if payload.meta.get("sets") != work.draws:
                raise SynthlearnError(f"sent {payload.meta.get('sets')!r} synthetic sets, the "
                                      f"student needs {work.draws}", where=source)
            self.sets[sid] = [self._read(payload, index, sid, ctx, source)
                              for index in range(work.draws)]
            if FILTER_SLOT in ctx.arm.component.slots:
                limit = MAX_IMAGES * work.draws * (MAX_REDRAW_ROUNDS + 1)
                self.screenings[sid] = received_screening(payload.meta, limit, source)
        if work.kr.labels == "ensemble" and len(received) > 1:
            self._label_elsewhere(ctx, work, seeds)

    @staticmethod
    def _read(payload: Payload, index: int, sid: int, ctx: ArmContext, source: str) -> SiteSet:
        t, prefix = payload.tensors, f"set.{index}."
        images = received_tensor(t, f"{prefix}images", torch.uint8,
                                 (None, ctx.in_chans, *ctx.image_size), source)
        labels = received_tensor(t, f"{prefix}labels", torch.int64, (len(images),), source)
        logits = received_tensor(t, f"{prefix}logits", torch.float32,
                                 (len(images), ctx.num_classes), source)
        _check_set(images, labels, logits, ctx, source)
        return images, labels.astype(np.int64), {sid: logits.astype(np.float64)}

    def _label_elsewhere(self, ctx: ArmContext, work: SiteWork, seeds: dict[int, int]) -> None:
        inbound = {
            site.id: Payload({f"site.{other}.set.{index}": torch.from_numpy(images)
                              for other, sets in self.sets.items() if other != site.id
                              for index, (images, _, _) in enumerate(sets)},
                             {"teacher_seed": teacher_seed(seeds[site.id])})
            for site in ctx.sites
        }
        task = SiteTask("label", label, work,
                        shares="its teacher's logits for the other sites' synthetic sets")
        labelled = ctx.run_sites(task, inbound=inbound)
        for teacher, payload in labelled.items():
            source = f"arm {ctx.name}, site {teacher}"
            missing = sorted(set(inbound[teacher].tensors) - set(payload.tensors))
            if missing:
                raise SynthlearnError(f"no logits for {len(missing)} of the synthetic sets "
                                      f"it was sent (first: {missing[0]})", where=source)
            extra = sorted(set(payload.tensors) - set(inbound[teacher].tensors))
            if extra:
                raise SynthlearnError(f"sent logits for {extra[0]!r}, a set it was not sent",
                                      where=source)
            for other, sets in self.sets.items():
                for index, (images, _, logits) in enumerate(sets):
                    name = f"site.{other}.set.{index}"
                    if other == teacher:
                        continue
                    values = received_tensor(payload.tensors, name, torch.float32,
                                             (len(images), ctx.num_classes), source)
                    if not np.isfinite(values).all():
                        raise SynthlearnError(f"malformed logits for {name}", where=source)
                    logits[teacher] = values.astype(np.float64)

    def draw(self, index: int) -> dict[int, SiteSet]:
        return {sid: sets[index] for sid, sets in self.sets.items()}

    def site_details(self, sid: int) -> dict[str, Any]:
        return {"screening": self.screenings[sid]} if sid in self.screenings else {}

    def artifacts(self) -> dict[str, bytes]:
        return {}


class PooledSource:
    """Every set a fresh seeded subset of the one labelled pool each site drew (``pool``):
    the pool comes from the models or samples source (drawn and labelled once), each set
    takes ``len(pool) / pool`` of its images (``synthlearn.api.pool_subset``), the same
    for both ways of sharing."""

    def __init__(self, inner: ModelsSource | SamplesSource, pool: int,
                 seeds: dict[int, int]) -> None:
        self.inner, self.seeds = inner, seeds
        self.pools = inner.draw(0)
        self.sizes = {sid: max(1, len(images) // pool)
                      for sid, (images, _, _) in self.pools.items()}

    def draw(self, index: int) -> dict[int, SiteSet]:
        out: dict[int, SiteSet] = {}
        for sid, (images, labels, logits) in self.pools.items():
            keep = pool_subset(len(images), self.sizes[sid],
                               derive_seed(self.seeds[sid], "kr-pool"), index)
            out[sid] = (images[keep], labels[keep],
                        {teacher: values[keep] for teacher, values in logits.items()})
        return out

    def site_details(self, sid: int) -> dict[str, Any]:
        return {"n_pool": len(self.pools[sid][0]), **self.inner.site_details(sid)}

    def artifacts(self) -> dict[str, bytes]:
        return self.inner.artifacts()
