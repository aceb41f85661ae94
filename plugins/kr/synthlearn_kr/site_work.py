"""What a site does for the ``kr`` arm: fit its generator (shared with any ``synthetic``
arm of the same generator), train its teacher, and send either both models or every
synthetic set already drawn and labelled; and, for ``labels: ensemble`` with
``share: samples``, label the other sites' sets with its teacher.

Under DP (the arm's ``dp:`` slot) a site trains two things on its images, the teacher
and the generator (the private part of its fit): two phases planned under one budget
(``kr_dp_phases``; one noise level, their composed ε), each sending its record.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
import torch.nn as nn
from synthlearn.api import (
    FILTER_SLOT,
    SHARED_FIT_TASK,
    Payload,
    PrivateTraining,
    Site,
    SiteEnv,
    TrainSettings,
    classifier_dp_steps,
    derive_seed,
    describe_slots,
    draw_pool,
    fit_site_generator,
    generator_dp_steps,
    generator_label,
    load_generator,
    load_state,
    make_converter,
    predict_logits,
    screen_site_pools,
    seeded_model,
    site_private_phases,
    state_payload,
    train_classifier,
)

from synthlearn_kr.config import KRConfig

#: The first site task: ``synthlearn.api.SHARED_FIT_TASK``, the name under which the
#: ``synthetic`` arm fits its generators too (the fit's seed derives from it), so a
#: site fits one generator for both arms.
TASK = SHARED_FIT_TASK


@attrs.frozen
class SiteWork:
    """The config a site gets: the arm's params and how many sets the student needs."""

    kr: KRConfig
    sets: int

    @property
    def draws(self) -> int:
        """How many sets the site draws and sends with ``share: samples`` (one pool with
        ``pool``, else every set)."""
        return 1 if self.kr.pool is not None else self.sets


def set_seed(env_seed: int, index: int) -> int:
    """The seed of synthetic set ``index`` of a site (site and server draw alike)."""
    return derive_seed(env_seed, "kr-set", index)


def teacher_component(env: SiteEnv) -> Any:
    """The recipe's ``teacher:`` model, else the arm's model."""
    return env.slots.get("teacher") or env.model_component


def teacher_seed(prepare_seed: int) -> int:
    """The teacher's seed, from the seed of the site's ``prepare`` task."""
    return derive_seed(prepare_seed, "teacher")


def kr_dp_phases(n: int, teacher_training: TrainSettings, generator: Any
                 ) -> dict[str, tuple[int, int]]:
    """Under DP: ``(batch size, steps)`` of each thing a site of ``n`` images trains on
    them, the teacher (its epochs of Poisson-sampled batches) and the generator (the
    private part of its fit, ``generator_dp_steps``)."""
    return {"teacher": classifier_dp_steps(n, teacher_training),
            "generator": generator_dp_steps(generator, n)}


def site_plans(site: Site, env: SiteEnv) -> dict[str, PrivateTraining] | None:
    """The site's DP plans, by phase (None without a ``dp:`` slot)."""
    if not any(c.kind == "dp_mechanism" for c in env.slots.values()):
        return None
    training = teacher_component(env).build().training
    return site_private_phases(env, len(site.data),
                               kr_dp_phases(len(site.data), training, env.slots["generator"]))


def site_teacher(site: Site, env: SiteEnv, seed: int, private: PrivateTraining | None = None
                 ) -> tuple[nn.Module, dict[str, Any] | None]:
    """The site's teacher: its model trained on the site's own images from ``seed``
    (once; kept at the site, so both ways of sharing and the labelling task use the
    same one), under the DP plan ``private`` when given; and that plan's record."""
    component = teacher_component(env)
    factory = component.build()

    def fresh() -> nn.Module:
        return seeded_model(factory, seed, env.in_chans, env.num_classes, env.image_size)

    def fit() -> Payload:
        model = train_classifier(fresh(), site.data, factory.training, seed, private=private,
                                 progress=env.progress, desc=f"site {site.id}: teacher")
        state = state_payload(model)
        if private is None:
            return state
        return Payload(state.tensors, {**state.meta, "privacy": private.record()})

    parts = {"fit": "teacher", "model": component.to_dict(make_converter()),
             "data": site.data.fingerprint(), "seed": seed,
             "shape": [env.num_classes, env.in_chans, list(env.image_size)]}
    if private is not None:
        parts["private"] = private.key()
    components = [component, *(c for c in env.slots.values()
                                if c.kind == "dp_mechanism" and private is not None)]
    kept = env.memo(parts, fit, components=components)
    return load_state(fresh(), kept, f"site {site.id} teacher"), kept.meta.get("privacy")


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": value for name, value in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = f"{prefix}."
    return {name[len(start):]: value for name, value in tensors.items()
            if name.startswith(start)}


def prepare(site: Site, work: SiteWork, inbound: Payload | None, env: SiteEnv) -> Payload:
    """Site work: fit the generator, train the teacher, send models or labelled sets."""
    plans = site_plans(site, env)
    scheme, stats, state = fit_site_generator(site, env,
                                              None if plans is None else plans["generator"])
    teacher, teacher_record = site_teacher(site, env, teacher_seed(env.seed),
                                           None if plans is None else plans["teacher"])
    n_real = len(site.data)
    meta: dict[str, Any] = {"share": work.kr.share, "n_real": n_real,
                            **describe_slots(env.slots)}
    if plans is not None:  # one record per phase; the server composes them
        meta["privacy"] = [state.meta.get("privacy"), teacher_record]
    if work.kr.share == "models":
        tensors = {**prefixed("generator", state.tensors),
                   **prefixed("teacher", teacher.state_dict())}
        return Payload(tensors, {**meta, "stats": stats, "generator": state.meta})
    generator = load_generator(env.slots["generator"], state, f"site {site.id} generator")
    label_ = generator_label(env.slots["generator"])
    shape = (env.in_chans, *env.image_size)
    pools = [draw_pool(generator, scheme, stats, work.kr.drawn_for(n_real),
                       set_seed(env.seed, index), label=label_, image_shape=shape,
                       class_balance=work.kr.class_balance)
             for index in range(work.draws)]
    pools, screening = screen_site_pools(pools, site, env, generator, scheme, stats,
                                         [set_seed(env.seed, i) for i in range(work.draws)])
    if screening is not None:  # screened before anything left; rejects redrawn
        meta[FILTER_SLOT] = screening
    tensors = {}
    for index, pool in enumerate(pools):
        tensors[f"set.{index}.images"] = torch.from_numpy(pool.images)
        tensors[f"set.{index}.labels"] = torch.from_numpy(pool.labels)
        tensors[f"set.{index}.logits"] = torch.from_numpy(
            predict_logits(teacher, pool.images).astype(np.float32))
    return Payload(tensors, {**meta, "sets": work.draws})


def label(site: Site, work: SiteWork, inbound: Payload | None, env: SiteEnv) -> Payload:
    """Site work for ``labels: ensemble`` with ``share: samples``: the site's teacher's
    logits for every image the server sent (other sites' synthetic sets; the metadata
    names the teacher's seed, the one it was trained with in ``prepare``). The site's
    teacher never leaves it."""
    if inbound is None or not isinstance(inbound.meta.get("teacher_seed"), int):
        raise ValueError("labelling needs the synthetic images and the teacher's seed")
    plans = site_plans(site, env)  # the teacher trained in prepare, under the same plan
    teacher, _ = site_teacher(site, env, inbound.meta["teacher_seed"],
                              None if plans is None else plans["teacher"])
    return Payload({name: torch.from_numpy(predict_logits(teacher, images.numpy())
                                           .astype(np.float32))
                    for name, images in inbound.tensors.items()},
                   {"n_images": sum(len(t) for t in inbound.tensors.values())})
