"""``GanGenerator``: the object synthlearn's ``generator`` kind asks for.

``fit`` trains a conditional DCGAN at one site (hinge or non-saturating loss, spectral-
norm projection discriminator, differentiable augmentation, an exponential moving
average of the generator's weights). Only the averaged generator is kept: the
discriminator never leaves the site. ``state``/``load`` move it as safetensors weights
plus JSON meta that holds the architecture, so any site's generator loads anywhere.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from synthlearn.api import (
    Conditions,
    Dataset,
    ImageData,
    Payload,
    Site,
    SynthlearnError,
    check_layout,
    deterministic_cudnn,
    load_state,
    resolve_device,
    to_float,
)
from tqdm import tqdm

from synthlearn_gan.augment import diff_augment
from synthlearn_gan.config import GanConfig
from synthlearn_gan.networks import (
    GanGeneratorNet,
    ProjectionDiscriminator,
    SpectralProjection,
    factor_side,
)

#: Version of the payload layout ``state`` writes and ``load`` reads.
FORMAT = 1

#: Images per forward pass when sampling.
SAMPLE_BATCH = 256

#: Batches used to recompute the averaged generator's batch-norm statistics after fit.
STAT_BATCHES = 16

#: The EMA decay ramps up as (1 + t) / (EMA_WARMUP + t) until it reaches ``config.ema``.
EMA_WARMUP = 10

#: Steps between refreshes of the progress bar's loss display.
REPORT_EVERY = 10


#: Largest image side the gan generator fits, loads or samples (a loaded file's side
#: decides the size of every sampled image, and tiny weights can claim a huge side).
MAX_SIDE = 512

#: Most image channels a loaded generator may claim.
MAX_CHANNELS = 4


def size_problem(shape: Sequence[int]) -> str | None:
    """Why images of ``shape`` (C, H, W) cannot be generated, or None when they can."""
    _, h, w = shape
    if h == w and factor_side(h) is not None:
        if h > MAX_SIDE:
            return (f"image size {h}x{w} is larger than the gan generator makes (a side of "
                    f"at most {MAX_SIDE})")
        return None
    return (f"image size {h}x{w} is not supported by the gan generator: use a square side "
            "b*2^k with b in 4..7, e.g. 28, 32, 64, 128")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _d_terms(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss per image (reals, then fakes): under DP each real image
    is one row whose gradient is clipped on its own."""
    if kind == "hinge":
        return torch.cat([F.relu(1.0 - real), F.relu(1.0 + fake)])
    return torch.cat([F.softplus(-real), F.softplus(fake)])


def _g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()


@torch.no_grad()
def _ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), live.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), live.buffers(), strict=True):
        b_ema.copy_(b)


class _Batches:
    """Draws training batches and generator inputs from a local ``torch.Generator``."""

    def __init__(self, data: ImageData, conditions: Conditions, device: torch.device,
                 rng: torch.Generator, batch_size: int, latent_dim: int) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(data.images)).to(device)
        self.labels = torch.from_numpy(conditions.labels.astype(np.int64)).to(device)
        self.vectors = torch.from_numpy(conditions.vectors.astype(np.float32)).to(device)
        self.device, self.rng = device, rng
        self.batch_size, self.latent_dim = batch_size, latent_dim

    def _index(self) -> torch.Tensor:
        return torch.randint(len(self.labels), (self.batch_size,), generator=self.rng).to(
            self.device)

    def real(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A uniform random batch of real images in [-1, 1] with their conditions."""
        index = self._index()
        return to_float(self.images[index]), self.labels[index], self.vectors[index]

    def poisson(self, rate: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real images each taken with probability ``rate`` (DP's Poisson sampling; the
        batch may be empty), with their conditions."""
        index = torch.rand(len(self.labels), generator=self.rng).lt(rate).nonzero().flatten()
        index = index.to(self.device)
        return to_float(self.images[index]), self.labels[index], self.vectors[index]

    def latent(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise plus conditions drawn from the site's own (label, vector) pairs."""
        z = torch.randn(self.batch_size, self.latent_dim, generator=self.rng).to(self.device)
        index = self._index()
        return z, self.labels[index], self.vectors[index]


@torch.no_grad()
def standing_stats(net: GanGeneratorNet,
                   latent: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                   ) -> None:
    """Recompute an averaged generator's batch-norm statistics from its own activations
    on ``STAT_BATCHES`` batches of ``latent()`` inputs (noise, labels, vectors): the
    statistics it carries belong to other weights (the live generator's, or each site's
    before the weights were averaged)."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    for _ in range(STAT_BATCHES):
        net(*latent())
    for m in norms:
        m.momentum = 0.1
    net.eval()


def build_pair(arch: dict[str, Any], private: bool = False
               ) -> tuple[GanGeneratorNet, ProjectionDiscriminator]:
    """A fresh generator and discriminator for ``arch`` (from the global RNG: seed it
    first). Under DP (``private``) the discriminator has no spectral-norm
    parametrisation (``SpectralProjection`` keeps it instead) and no minibatch-std
    groups; otherwise its groups never mix real and fake images."""
    cfg, shape = arch["config"], tuple(arch["image_shape"])
    gen = GanGeneratorNet(shape, arch["num_classes"], arch["vector_size"], cfg["latent_dim"],
                          cfg["width"])
    disc = ProjectionDiscriminator(shape, arch["num_classes"], arch["vector_size"],
                                   cfg["width"], spectral=not private)
    # minibatch-std groups: consecutive samples that never mix real and fake (under
    # DP none: a statistic across images breaks the per-image bound)
    disc.group = (1 if private
                  else next(g for g in (4, 3, 2, 1) if cfg["batch_size"] % g == 0))
    return gen, disc


def private_steps(cfg: GanConfig) -> tuple[int, int]:
    """``(batch size, steps)`` of the private part of a gan's training at a site: only
    the discriminator sees the site's images, ``steps * d_steps`` updates on expected
    real batches of ``batch_size`` (a one-shot fit, or all of a fedgan's rounds)."""
    return cfg.batch_size, cfg.steps * cfg.d_steps


class GanSteps:
    """The adversarial training of one generator and discriminator at one site, step by
    step: what a one-shot fit runs ``steps`` times and a ``fedgan`` round runs for its
    share of them. Fresh Adam optimisers; real batches, noise and conditions from
    ``batches``; with ``private`` (a DP plan) the discriminator is trained privately."""

    def __init__(self, cfg: GanConfig, gen: GanGeneratorNet, disc: ProjectionDiscriminator,
                 batches: _Batches, device: torch.device, seed: int, private: Any = None
                 ) -> None:
        self.cfg, self.gen, self.disc, self.batches = cfg, gen, disc, batches
        self.private = private
        # channels-last convolutions are markedly faster on CPU (oneDNN) and on GPUs;
        # per-example gradients (DP) need the discriminator's inputs in the default layout
        self.d_format = torch.channels_last if private is None else torch.contiguous_format
        for net in (gen, disc):
            net.to(device=device, memory_format=torch.channels_last)
        disc.to(memory_format=self.d_format)
        gen.train()
        disc.train()
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=betas, foreach=True)
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=betas,
                                      foreach=True)
        self.session = self.projection = None
        if private is not None:
            self.projection = SpectralProjection(disc, seed)
            noise = torch.Generator(device=device).manual_seed(seed + 1)
            self.session = private.mechanism.attach(
                disc, self.opt_d, noise_multiplier=private.noise_multiplier,
                expected_batch_size=2 * cfg.batch_size, generator=noise)
        self.watch = torch.zeros((), device=device)  # losses summed, checked every few steps

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        x = diff_augment(x, self.batches.rng) if self.cfg.augment else x
        return x.contiguous(memory_format=self.d_format)

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One generator update after ``d_steps`` discriminator updates; the losses."""
        cfg, gen, disc, batches = self.cfg, self.gen, self.disc, self.batches
        # discriminator: real vs. detached fakes, in one forward pass
        disc.requires_grad_(True)
        for _ in range(cfg.d_steps):
            if self.session is not None:
                loss_d, fake, fake_y, fake_v = self._private_d_step()
                self.private.steps += 1
                continue
            real, real_y, real_v = batches.real()
            z, fake_y, fake_v = batches.latent()
            fake = gen(z, fake_y, fake_v)
            scores = disc(self._aug(torch.cat([real, fake.detach()])),
                          torch.cat([real_y, fake_y]), torch.cat([real_v, fake_v]))
            loss_d = _d_loss(cfg.loss, *scores.chunk(2))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        # generator: the last fakes again, through the updated discriminator
        disc.requires_grad_(False)
        loss_g = _g_loss(cfg.loss, disc(self._aug(fake), fake_y, fake_v))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return loss_d, loss_g

    def run(self, steps: int, *, progress: bool, desc: str,
            after_step: Callable[[int], None] | None = None) -> None:
        """``steps`` steps under a progress bar, ``after_step(step)`` after each; losses
        that turn NaN or infinite stop it with a ``SynthlearnError`` naming the step
        (checked every ``REPORT_EVERY`` steps)."""
        bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False,
                   file=sys.stderr)
        for step in bar:
            loss_d, loss_g = self.step()
            if after_step is not None:
                after_step(step)
            self.watch += loss_d.detach() + loss_g.detach()  # NaN or inf stays non-finite
            if step % REPORT_EVERY == 0 or step == steps - 1:
                if not torch.isfinite(self.watch):  # stop where it happens, naming the step
                    bar.close()
                    raise SynthlearnError(
                        f"gan training diverged by step {step + 1} of {steps} "
                        f"(discriminator loss {loss_d.item():.4g}, generator loss "
                        f"{loss_g.item():.4g}): try a lower lr_d / lr_g")
                if progress:
                    bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}",
                                    refresh=False)
        bar.close()

    def finish(self) -> None:
        """End a private run: the mechanism's final facts go to the plan's details."""
        if self.session is not None:
            self.private.details = dict(self.session.finish())

    def _private_d_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One DP discriminator update: a Poisson batch of reals beside a full batch of
        fakes, one loss row per image, clipped and noised by the mechanism, then the
        spectral projection. Returns the loss and the fakes (for the generator step)."""
        assert self.session is not None and self.projection is not None
        real, real_y, real_v = self.batches.poisson(self.private.sample_rate)
        z, fake_y, fake_v = self.batches.latent()
        fake = self.gen(z, fake_y, fake_v)
        self.session.zero_grad()
        scores = self.session.forward(self._aug(torch.cat([real, fake.detach()])),
                                      torch.cat([real_y, fake_y]), torch.cat([real_v, fake_v]))
        loss_d = _d_terms(self.cfg.loss, scores[:len(real)], scores[len(real):]).mean()
        loss_d.backward()
        self.session.step()
        self.projection.project()
        return loss_d, fake, fake_y, fake_v


class GanGenerator:
    """A conditional DCGAN generator (kind ``generator``, name ``gan``).

    Unfitted when made; ``fit`` or ``load`` gives it an averaged generator network that
    ``sample`` and ``state`` use. See ``GanConfig`` for the params.
    """

    def __init__(self, config: GanConfig) -> None:
        self.config = config
        self._net: GanGeneratorNet | None = None
        self._arch: dict[str, Any] = {}

    # --- checks --------------------------------------------------------------------

    def dp_steps(self, n: int) -> tuple[int, int]:
        """Under DP only the discriminator sees the site's images: ``private_steps``."""
        return private_steps(self.config)

    def _too_few(self, n: int) -> str | None:
        need = self.config.min_images
        if n >= need:
            return None
        return f"{n} images; the gan generator needs at least {need} (params.min_images)"

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Raise ``SynthlearnError`` for an unsupported image size or a site with fewer
        than ``min_images`` images (naming the site)."""
        problem = size_problem((dataset.channels, *dataset.image_size))
        if problem:
            raise SynthlearnError(problem)
        for site in sites:
            problem = self._too_few(len(site.data))
            if problem:
                raise SynthlearnError(f"site {site.id} has {problem}")

    # --- building ------------------------------------------------------------------

    def _build(self, arch: dict[str, Any], seed: int) -> GanGeneratorNet:
        """A generator network for ``arch``, initialised from ``seed`` without touching
        the caller's global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return GanGeneratorNet(tuple(arch["image_shape"]), arch["num_classes"],
                                   arch["vector_size"], arch["config"]["latent_dim"],
                                   arch["config"]["width"])

    # --- fit -----------------------------------------------------------------------

    def fit(self, data: ImageData, conditions: Conditions, num_classes: int, seed: int, *,
            progress: bool = True, desc: str = "generator", private: Any = None) -> None:
        """Train on one site's uint8 images under ``conditions`` (one per image).

        Deterministic on CPU for a given ``seed``; the caller's global RNG state is
        left as it was. Losses that turn NaN or infinite stop the fit with a
        ``SynthlearnError`` naming the step (checked every ``REPORT_EVERY`` steps).

        ``private`` (a DP plan, ``synthlearn.api.PrivateTraining``) trains the
        discriminator, the only network that sees real images, under differential
        privacy: real batches Poisson-sampled at the plan's rate, each real image's
        gradient clipped and the plan's noise added (the fakes' rows are clipped too;
        they depend on no real image), spectral norm kept by projection after each step
        and no minibatch statistic across images. The generator learns only through the
        private discriminator, so it carries the plan's ε.
        """
        shape = tuple(int(s) for s in data.images.shape[1:])
        problem = size_problem(shape)
        if problem:
            raise SynthlearnError(problem)
        problem = self._too_few(len(data))
        if problem:
            raise SynthlearnError(problem)
        if num_classes < 1:
            raise SynthlearnError(f"num_classes must be at least 1, got {num_classes}")
        conditions.check(len(data), num_classes, None)

        cfg = self.config
        device = resolve_device(cfg.device)
        arch = {"image_shape": list(shape), "num_classes": int(num_classes),
                "vector_size": conditions.vector_size, "config": cfg.to_dict()}
        with torch.random.fork_rng(devices=[]), deterministic_cudnn(device.type == "cuda"):
            torch.manual_seed(seed)
            ema = self._train(arch, data, conditions, seed, device, progress, desc, private)
        self._net, self._arch = ema, arch

    def _train(self, arch: dict[str, Any], data: ImageData, conditions: Conditions, seed: int,
               device: torch.device, progress: bool, desc: str, private: Any = None
               ) -> GanGeneratorNet:
        cfg = self.config
        rng = torch.Generator().manual_seed(seed)
        gen, disc = build_pair(arch, private is not None)
        ema = copy.deepcopy(gen).eval()
        ema.to(device=device, memory_format=torch.channels_last)
        batches = _Batches(data, conditions, device, rng, cfg.batch_size, cfg.latent_dim)
        steps = GanSteps(cfg, gen, disc, batches, device, seed, private)

        def average(step: int) -> None:
            _ema_update(ema, gen, min(cfg.ema, (1.0 + step) / (EMA_WARMUP + step)))

        steps.run(cfg.steps, progress=progress, desc=desc, after_step=average)
        steps.finish()
        standing_stats(ema, batches.latent)
        # kept (and sampled) in the default layout, exactly like a loaded generator
        return ema.to(device="cpu", memory_format=torch.contiguous_format).eval()

    # --- sampling ------------------------------------------------------------------

    def sample(self, conditions: Conditions, seed: int) -> np.ndarray:
        """uint8 images (N, C, H, W), one per condition, deterministic in ``seed``."""
        net = self._net
        if net is None:
            raise SynthlearnError("the gan generator has not been fitted or loaded")
        c, h, w = self._arch["image_shape"]
        conditions.check(len(conditions), self._arch["num_classes"],
                         self._arch["vector_size"])
        n = len(conditions)
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, net.latent_dim, generator=rng)
        labels = torch.from_numpy(conditions.labels.astype(np.int64))
        vectors = torch.from_numpy(conditions.vectors.astype(np.float32))
        device = resolve_device(self.config.device)
        out = np.empty((n, c, h, w), dtype=np.uint8)
        net.to(device).eval()
        try:
            with torch.inference_mode():
                for start in range(0, n, SAMPLE_BATCH):
                    part = slice(start, start + SAMPLE_BATCH)
                    x = net(z[part].to(device), labels[part].to(device), vectors[part].to(device))
                    x = ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255)
                    out[part] = x.to(torch.uint8).cpu().numpy()
        finally:
            net.to("cpu")
        return out

    # --- exchange ------------------------------------------------------------------

    def state(self) -> Payload:
        """The averaged generator's weights plus the architecture as JSON meta."""
        if self._net is None:
            raise SynthlearnError("the gan generator has not been fitted or loaded")
        return generator_payload(self._net, self._arch)

    def load(self, payload: Payload, source: str) -> None:
        """Restore a fitted generator from ``state()``'s payload; the architecture comes
        from the payload's meta. Any problem is a one-line ``SynthlearnError`` naming
        ``source``."""
        arch = _parse_meta(payload.meta, source)
        # every size in the meta is checked against the tensors present before a
        # network is built, so the meta cannot make the build allocate more than they hold
        _check_key_tensors(arch, payload.tensors, source)
        _check_against_layout(arch, payload.tensors, source)
        try:
            net = self._build(arch, 0)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise SynthlearnError(f"cannot build the gan generator from its metadata: "
                                  f"{_one_line(exc)}", where=source) from None
        load_state(net, payload, source)
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise SynthlearnError(f"gan generator weight {name!r} holds NaN or infinite "
                                      "values", where=source)
        self._net, self._arch = net.eval(), arch


def generator_payload(net: GanGeneratorNet, arch: dict[str, Any]) -> Payload:
    """A generator network's weights plus its architecture ``arch`` as JSON meta: what
    ``GanGenerator.state`` sends and ``GanGenerator.load`` reads."""
    tensors = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    meta = {"generator": "gan", "format": FORMAT, "config": dict(arch["config"]),
            "image_shape": list(arch["image_shape"]), "num_classes": arch["num_classes"],
            "vector_size": arch["vector_size"]}
    return Payload(tensors, meta)


def _shape_of(tensors: dict[str, torch.Tensor], name: str, ndim: int, source: str
              ) -> tuple[int, ...]:
    tensor = tensors.get(name)
    if tensor is None:
        raise SynthlearnError(f"weights do not fit the metadata: no tensor {name!r}",
                              where=source)
    if tensor.dim() != ndim:
        raise SynthlearnError(f"weights do not fit the metadata: {name!r} has shape "
                              f"{tuple(tensor.shape)}, expected {ndim} dimensions",
                              where=source)
    return tuple(int(d) for d in tensor.shape)


def _check_key_tensors(arch: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
                       ) -> None:
    """The meta's ``num_classes``, ``latent_dim``, ``width``, ``vector_size`` and channels
    against the shapes of the class embedding, the first linear layer and the output
    convolution, with a message naming the field that disagrees."""
    config = arch["config"]
    latent, width = config["latent_dim"], config["width"]
    embed = _shape_of(tensors, "embed.weight", 2, source)
    out = _shape_of(tensors, "out.weight", 4, source)
    fc = _shape_of(tensors, "fc.weight", 2, source)
    claims = [
        ("'num_classes'", arch["num_classes"], "embed.weight", embed, embed[0]),
        ("config 'latent_dim'", latent, "embed.weight", embed, embed[1]),
        ("config 'width'", width, "out.weight", out, out[1]),
        ("'image_shape' channels", arch["image_shape"][0], "out.weight", out, out[0]),
        ("'vector_size'", arch["vector_size"], "fc.weight", fc, fc[1] - 2 * embed[1]),
    ]
    for field, claimed, name, shape, present in claims:
        if claimed != present:
            raise SynthlearnError(f"weights do not fit the metadata: {field} is {claimed}, "
                                  f"but {name} has shape {shape}", where=source)


def _check_against_layout(arch: dict[str, Any], tensors: dict[str, torch.Tensor],
                          source: str) -> None:
    """Every tensor of the network ``arch`` describes (built on the meta device, which
    allocates nothing) present with its shape and dtype, and nothing else."""
    config = arch["config"]
    with torch.device("meta"):
        layout = GanGeneratorNet(tuple(arch["image_shape"]), arch["num_classes"],
                                 arch["vector_size"], config["latent_dim"],
                                 config["width"]).state_dict()
    check_layout(layout, tensors, source)


def _parse_meta(meta: Any, source: str) -> dict[str, Any]:
    """The architecture in a gan payload's meta, checked; errors name ``source``."""

    def fail(message: str) -> SynthlearnError:
        return SynthlearnError(message, where=source)

    def is_int(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not isinstance(meta, dict):
        raise fail("gan payload metadata is not a JSON object")
    if meta.get("generator") != "gan":
        raise fail(f"not a gan generator payload (meta 'generator' is "
                   f"{meta.get('generator')!r}, expected 'gan')")
    if meta.get("format") != FORMAT or isinstance(meta.get("format"), bool):
        raise fail(f"unsupported gan payload format {meta.get('format')!r} "
                   f"(this version reads format {FORMAT})")
    for key in ("config", "image_shape", "num_classes", "vector_size"):
        if key not in meta:
            raise fail(f"gan payload metadata has no {key!r}")
    shape = meta["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(s, 1) for s in shape)):
        raise fail(f"gan payload 'image_shape' must be [C, H, W] positive integers, "
                   f"got {shape!r}")
    if shape[0] > MAX_CHANNELS:
        raise fail(f"gan payload 'image_shape' has {shape[0]} channels; at most "
                   f"{MAX_CHANNELS} are supported")
    problem = size_problem(shape)
    if problem:
        raise fail(problem)
    if not is_int(meta["num_classes"], 1):
        raise fail(f"gan payload 'num_classes' must be a positive integer, "
                   f"got {meta['num_classes']!r}")
    if not is_int(meta["vector_size"], 0):
        raise fail(f"gan payload 'vector_size' must be a non-negative integer, "
                   f"got {meta['vector_size']!r}")
    if not isinstance(meta["config"], dict):
        raise fail("gan payload 'config' must be a JSON object")
    try:
        config = GanConfig(**meta["config"])
    except (TypeError, ValueError) as exc:
        raise fail(f"gan payload 'config' is invalid: {_one_line(exc)}") from None
    return {"image_shape": list(shape), "num_classes": meta["num_classes"],
            "vector_size": meta["vector_size"], "config": config.to_dict()}

