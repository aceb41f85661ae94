"""The ``fedgan`` arm (FedGAN): the sites train one conditional GAN together by
federated averaging, and the server trains the downstream model on its samples.

Each round every site takes its share of the gan's ``steps`` from the global generator
and discriminator (``synthlearn_gan.federated``); the server checks both networks each
site sent and averages them, weighted by the sites' image counts, with the core's
``average`` (as the ``fedavg`` arm averages models). A one-shot ``synthetic`` arm with the
same ``generator:`` params takes as many steps at each site, so the two compare at the
same compute. The server keeps the generator's exponential moving average over round
ends (``ema`` per step, compounded over a round's steps), scores it against the real
test images every ``fidelity_every`` rounds (fd, precision, recall, realism: the arm's
per-round curve, with the bytes so far), and at the end draws, for every site, as many
synthetic images as that site would send (``multiple`` or ``count``) following the
site's class and attribute mix, and trains the downstream model on their union.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import torch
from synthlearn import int_at_least
from synthlearn.api import (
    STATISTICS_OUTSIDE_BUDGET,
    ArmContext,
    ArmResult,
    ImageData,
    Payload,
    PrivacyLedger,
    ShareSize,
    SiteTask,
    SynthlearnError,
    TrainSettings,
    average,
    check_site_steps,
    check_stats,
    check_update,
    checked_n_real,
    derive_seed,
    draw_pool,
    finish_at_sites,
    generator_label,
    load_generator,
    received_count,
)

from synthlearn_gan.config import GanConfig
from synthlearn_gan.federated import (
    FedGanRound,
    architecture,
    ema_decay,
    fedgan_round,
    pair_state,
    round_steps,
    site_summary,
)
from synthlearn_gan.generator import (
    build_pair,
    generator_payload,
    private_steps,
    standing_stats,
)

WEIGHTINGS: tuple[str, ...] = ("examples", "uniform")


@attrs.frozen
class FedGanConfig(ShareSize):
    """FedGAN (Rasouli et al., 2020): one GAN trained by federated averaging.

    ``rounds`` rounds split the ``generator:`` slot's ``steps`` (a gan's params) among
    them: every site takes that many steps in all, as in a one-shot ``synthetic`` arm.
    The server averages both networks by image count (``weighting: examples``) or
    equally (``uniform``). Every ``fidelity_every`` rounds and after the last, the
    averaged generator draws ``fidelity_images`` images that are scored against the
    real test images. At the end each site's share of the pool is ``multiple`` times
    its image count (default 1.0) or ``count`` images, as in the ``synthetic`` arm.
    """

    rounds: int = attrs.field(
        default=10, validator=int_at_least(1),
        metadata={"doc": "communication rounds; the gan's `steps` are split among them"})
    weighting: str = attrs.field(
        default="examples", validator=attrs.validators.in_(WEIGHTINGS),
        metadata={"doc": "average the sites' networks by their number of images (`examples`)"
                         " or equally (`uniform`)"})
    fidelity_every: int = attrs.field(
        default=1, validator=int_at_least(1),
        metadata={"doc": "score the averaged generator against the test images every this "
                         "many rounds, and after the last"})
    fidelity_images: int = attrs.field(
        default=500, validator=int_at_least(8),
        metadata={"doc": "images the averaged generator draws for each of those scores"})


class FedGanArm:
    """Federated GAN training, then a downstream model on the global generator's images."""

    private = True

    def __init__(self, config: FedGanConfig) -> None:
        self.config = config

    def check_slots(self, slots: Mapping[str, Any]) -> None:
        """The arm averages the gan plugin's networks: its generator must be ``gan``, and
        every round must have a step."""
        generator = slots["generator"]
        if generator.use != "gan" or not isinstance(generator.config, GanConfig):
            raise SynthlearnError(f"fedgan averages the gan generator's networks; "
                                  f"{generator_label(generator)} cannot be averaged")
        if generator.config.steps < self.config.rounds:
            raise SynthlearnError(f"the gan's {generator.config.steps} steps cannot be split "
                                  f"over {self.config.rounds} rounds (fewer steps than rounds)")

    def dp_steps(self, n: int, training: TrainSettings, slots: Mapping[str, Any]
                 ) -> tuple[int, int]:
        """Under DP (DP-FedGAN) each site's discriminator trains privately in every round:
        the gan's private steps over the whole arm, as in a one-shot fit, with one noise
        level planned for all rounds. The generator sees only the discriminator's
        verdicts, and the server only the networks the rounds produce."""
        return private_steps(slots["generator"].config)

    def dp_models(self, slots: Mapping[str, Any]) -> tuple[str, ...]:
        """Only the gan trains at the sites: the model learns from its samples at the
        server, so it may keep batch norm and mixup."""
        return ()

    def run(self, ctx: ArmContext) -> ArmResult:
        cfg = self.config
        check_site_steps(ctx)  # before any work (validate has run check_slots)
        ledger = PrivacyLedger.for_arm(ctx)
        generator = ctx.arm.component.slots["generator"]
        gan: GanConfig = generator.config
        scheme = ctx.arm.component.slots["conditioning"].build()
        summaries = ctx.run_sites(SiteTask(
            "fedgan-summary", site_summary, None,
            "aggregate label/attribute statistics and the image count, once"))
        stats, sizes, vector_size = {}, {}, None
        for site in ctx.sites:
            meta, source = summaries[site.id].meta, f"arm {ctx.name}, site {site.id}"
            check_stats(scheme, meta.get("stats"), ctx.num_classes, source)
            stats[site.id] = meta["stats"]
            sizes[site.id] = checked_n_real(meta, meta["stats"], ctx.site_image_limit, source)
            claimed = received_count(meta, "vector_size", 0, 4096, source)
            if vector_size not in (None, claimed):
                raise SynthlearnError(f"conditioning vector size {claimed} differs from the "
                                      f"other sites' {vector_size}", where=source)
            vector_size = claimed
        arch = architecture(gan, (ctx.in_chans, *ctx.image_size), ctx.num_classes,
                            int(vector_size or 0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed_for("fedgan", "init"))
            gen, disc = build_pair(arch, ledger is not None)
        state = pair_state(gen, disc)
        parameters = {f"generator.{n}" for n, _ in gen.named_parameters()} | {
            f"discriminator.{n}" for n, _ in disc.named_parameters()}
        ema = {k.removeprefix("generator."): v.clone() for k, v in state.items()
               if k.startswith("generator.")}
        weights = {n for n, _ in gen.named_parameters()}  # the EMA averages these
        total = sum(sizes.values())
        scored = {sid: max(1, round(cfg.fidelity_images * n / total))
                  for sid, n in sizes.items()}  # the pooled class mix
        schedule = round_steps(gan.steps, cfg.rounds)
        by_id = {site.id: site for site in ctx.sites}
        done = 0
        for r, steps in enumerate(schedule):
            task = SiteTask(f"fedgan-round-{r}", fedgan_round, FedGanRound(round=r, steps=steps),
                            "generator and discriminator weights after local GAN steps, "
                            "every round", round=r)
            received = ctx.run_sites(task, Payload(state, {"round": r}),
                                     [by_id[s] for s in sorted(by_id)])
            updates = []
            for sid in sorted(by_id):
                source = f"arm {ctx.name}, site {sid}, round {r}"
                check_update(received[sid].tensors, state, source)
                if ledger is not None:
                    ledger.add(sid, received[sid].meta.get("privacy"), source)
                weight = float(sizes[sid]) if cfg.weighting == "examples" else 1.0
                updates.append((received[sid].tensors, weight))
            state = average(state, updates, 1.0, parameters)
            decay = ema_decay(gan, done, steps)
            done += steps
            for name, value in ema.items():
                new = state[f"generator.{name}"]
                ema[name] = torch.lerp(value, new, 1.0 - decay) if name in weights else new
            if (r + 1) % cfg.fidelity_every == 0 or r == len(schedule) - 1:
                payload = self._global_generator(ctx, arch, ema, stats)
                images = self._draw(ctx, generator, payload, scheme, stats, scored,
                                    "fidelity", r)
                figures = ctx.score_synthetic(
                    np.concatenate([images[sid].images for sid in sorted(images)]))
                ctx.record_round(r, None, steps=done, **{
                    k: figures[k] for k in ("fd", "precision", "recall", "realism")
                    if k in figures})
        payload = self._global_generator(ctx, arch, ema, stats)
        pools = self._draw(ctx, generator, payload, scheme, stats,
                           {sid: cfg.images_for(sizes[sid]) for sid in stats}, "sample")
        pooled = ImageData.concat([pools[sid] for sid in sorted(pools)])
        model = ctx.train(pooled, "fedgan", desc="the global generator's images")
        details: dict[str, Any] = {
            "rounds": cfg.rounds, "steps_per_round": schedule, "n_train": len(pooled),
            "generator": generator.use,
            "conditioning": ctx.arm.component.slots["conditioning"].use,
        }
        details.update(finish_at_sites(ctx, model))
        details["per_site"] = [
            {"site": sid, "n_real": sizes[sid], "n_synthetic": len(pools[sid]),
             "class_counts_synthetic": pools[sid].class_counts(ctx.num_classes)}
            for sid in sorted(pools)]
        privacy = None if ledger is None else ledger.summary([STATISTICS_OUTSIDE_BUDGET])
        return ArmResult(model=model, details=details, synthetic=pools,
                         artifacts={"global-generator.safetensors": payload.to_bytes()},
                         privacy=privacy)

    @staticmethod
    def _global_generator(ctx: ArmContext, arch: dict[str, Any],
                          ema: dict[str, torch.Tensor], stats: dict[int, Any]) -> Payload:
        """The averaged generator as a gan payload, its batch-norm statistics recomputed
        on noise and conditions drawn from the sites' pooled statistics."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed_for("fedgan", "net"))
            net, _ = build_pair(arch)
        net.load_state_dict(copy.deepcopy(ema))
        scheme = ctx.arm.component.slots["conditioning"].build()
        rng = np.random.default_rng(derive_seed(ctx.seed, "fedgan-stats"))
        noise = torch.Generator().manual_seed(derive_seed(ctx.seed, "fedgan-noise"))
        site_ids = sorted(stats)
        batch = arch["config"]["batch_size"]

        def latent() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            sid = site_ids[int(rng.integers(len(site_ids)))]
            labels, attributes = scheme.sample(stats[sid], batch, rng)
            conditions = scheme.encode(np.asarray(labels), attributes, stats[sid])
            z = torch.randn(batch, arch["config"]["latent_dim"], generator=noise)
            return (z, torch.from_numpy(conditions.labels.astype(np.int64)),
                    torch.from_numpy(conditions.vectors.astype(np.float32)))

        standing_stats(net, latent)
        return generator_payload(net, arch)

    @staticmethod
    def _draw(ctx: ArmContext, generator: Any, payload: Payload, scheme: Any,
              stats: dict[int, Any], counts: dict[int, int], *tags: object
              ) -> dict[int, ImageData]:
        """For every site, ``counts[site]`` images of the global generator following the
        site's statistics (seeded by the site and ``tags``)."""
        loaded = load_generator(generator, payload, f"arm {ctx.name}, global generator")
        return {sid: draw_pool(loaded, scheme, stats[sid], counts[sid],
                               derive_seed(ctx.seed, "fedgan-draw", sid, *tags),
                               label=generator_label(generator),
                               image_shape=(ctx.in_chans, *ctx.image_size))
                for sid in sorted(stats)}
