"""``DiffusionGenerator``: the object synthlearn's ``generator`` kind asks for.

``fit`` trains a class-conditional denoising UNet (diffusers ``UNet2DModel``) at one
site: cosine noise schedule, v-prediction, a learned null class dropped in at rate
``cond_drop`` for classifier-free guidance, AdamW with a short warm-up, an exponential
moving average of the weights. Only the averaged network is kept. ``sample`` runs
DPM-Solver++ (or DDIM) from seeded noise with guidance. ``state``/``load`` move the
network as safetensors weights plus JSON meta holding the UNet config, which ``load``
checks against an allow-list and bounds and then against the tensors (on the ``meta``
device, allocating nothing) before it builds anything.
"""

from __future__ import annotations

import copy
import sys
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

from synthlearn_diffusion.config import DiffusionConfig
from synthlearn_diffusion.networks import (
    MAX_CLASSES,
    MAX_SIDE,
    MAX_VECTOR,
    SCHEDULE,
    DiffusionNet,
    ae_config,
    ae_config_problem,
    alphas_cumprod,
    build_autoencoder,
    build_net,
    latent_side,
    make_sampler,
    pad_side,
    unet_config,
    unet_config_problem,
)

#: The name ``state()`` writes into its meta and ``load`` expects there.
NAME = "diffusion"

#: Version of the payload layout ``state`` writes and ``load`` reads.
FORMAT = 1

#: Images per network evaluation when sampling (twice that with guidance).
SAMPLE_BATCH = 128

#: The EMA decay ramps up as (1 + t) / (EMA_WARMUP + t) until it reaches ``config.ema``.
EMA_WARMUP = 10

#: Steps between checks of the loss (and refreshes of the progress bar).
REPORT_EVERY = 10

#: Most image channels it makes (grey, RGB, RGBA).
MAX_IMAGE_CHANNELS = 4

#: Smallest image side it makes.
MIN_SIDE = 8

#: Largest gradient norm of an update (clipped above).
CLIP_NORM = 1.0


def size_problem(shape: tuple[int, ...], levels: int) -> str | None:
    """Why images of ``shape`` (C, H, W) cannot be generated with ``levels`` UNet levels,
    or None when they can."""
    c, h, w = shape
    if h != w:
        return (f"image size {h}x{w} is not supported by the diffusion generator: square "
                "images only (e.g. 28, 32, 64)")
    if not 1 <= c <= MAX_IMAGE_CHANNELS:
        return (f"images with {c} channels are not supported by the diffusion generator "
                f"(1 to {MAX_IMAGE_CHANNELS})")
    if h < MIN_SIDE or pad_side(h, levels) > MAX_SIDE:
        return (f"image size {h}x{w} is not supported by the diffusion generator: a side of "
                f"{MIN_SIDE} to {MAX_SIDE}")
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@torch.no_grad()
def _ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), live.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)


def _pad(x: torch.Tensor, side: int) -> torch.Tensor:
    """``x`` (N, C, s, s) reflect-padded to ``side`` (the UNet's side), centred."""
    extra = side - x.shape[-1]
    if extra == 0:
        return x
    lo = extra // 2
    return F.pad(x, (lo, extra - lo, lo, extra - lo), mode="reflect")


def _crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side`` x ``side`` of ``x``: undoes ``_pad``."""
    lo = (x.shape[-1] - side) // 2
    return x[..., lo:lo + side, lo:lo + side]


class DiffusionGenerator:
    """A class-conditional diffusion model (kind ``generator``, name ``diffusion``).

    Unfitted when made; ``fit`` or ``load`` gives it an averaged ``DiffusionNet`` that
    ``sample`` and ``state`` use. See ``DiffusionConfig`` for the params. ``sample``
    reads ``sample_steps``, ``guidance`` and ``sampler`` from this object's config, so a
    loaded generator samples as the loading side configures it.
    """

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        self._net: DiffusionNet | None = None
        self._arch: dict[str, Any] = {}
        self._progress: bool | None = None  # the last fit's; None: only on a terminal

    # --- checks --------------------------------------------------------------------

    def _too_few(self, n: int) -> str | None:
        need = self.config.min_images
        if n >= need:
            return None
        return f"{n} images; the diffusion generator needs at least {need} (params.min_images)"

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Raise ``SynthlearnError`` for an unsupported image shape or a site with fewer
        than ``min_images`` images (naming the site)."""
        problem = size_problem((dataset.channels, *dataset.image_size), self.config.levels)
        if problem:
            raise SynthlearnError(problem)
        for site in sites:
            problem = self._too_few(len(site.data))
            if problem:
                raise SynthlearnError(f"site {site.id} has {problem}")

    # --- fit -----------------------------------------------------------------------

    def fit(self, data: ImageData, conditions: Conditions, num_classes: int, seed: int, *,
            progress: bool = True, desc: str = "generator") -> None:
        """Train on one site's uint8 images under ``conditions`` (one per image).

        Deterministic on CPU for a given ``seed``; the caller's global RNG state is left
        as it was. A loss that turns NaN or infinite stops the fit with a
        ``SynthlearnError`` naming the step.
        """
        cfg = self.config
        images = data.images
        if images.ndim != 4 or images.dtype != np.uint8:
            raise SynthlearnError(f"expected uint8 images (N, C, H, W), got {images.dtype} "
                                  f"{images.shape}")
        shape = tuple(int(s) for s in images.shape[1:])
        problem = size_problem(shape, cfg.levels) or self._too_few(len(data))
        if problem:
            raise SynthlearnError(problem)
        if not 1 <= num_classes <= MAX_CLASSES:
            raise SynthlearnError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
        conditions.check(len(data), num_classes, None)
        if conditions.vector_size > MAX_VECTOR:
            raise SynthlearnError(f"condition vectors of size {conditions.vector_size} are "
                                  f"longer than the diffusion generator takes ({MAX_VECTOR})")

        device = resolve_device(cfg.device)
        pixels = to_float(torch.from_numpy(np.ascontiguousarray(images)))
        with torch.random.fork_rng(devices=[]), deterministic_cudnn(device.type == "cuda"):
            torch.manual_seed(seed)
            rng = torch.Generator().manual_seed(seed)
            autoencoder, ae = None, None
            x = pixels
            if cfg.latent:
                ae = ae_config(shape[0], shape[1], cfg.ae_width, cfg.ae_levels,
                               cfg.latent_channels)
                autoencoder, x = self._train_autoencoder(ae, pixels, rng, device, progress,
                                                         desc)
                ae["scaling_factor"] = float(1.0 / x.std().clamp_min(1e-3))
                x = x * ae["scaling_factor"]
            arch = {"unet": unet_config(x.shape[1], x.shape[-1], cfg.width, cfg.levels,
                                        cfg.layers_per_block, cfg.attention),
                    "autoencoder": ae,
                    "image_shape": list(shape), "num_classes": int(num_classes),
                    "vector_size": int(conditions.vector_size), "schedule": dict(SCHEDULE),
                    "config": cfg.to_dict()}
            ema = self._train(arch, x, conditions, rng, device, progress, desc)
            if autoencoder is not None:
                ema.attach_decoder(autoencoder.to("cpu").eval().requires_grad_(False))
        self._net, self._arch, self._progress = ema, arch, progress

    def _train_autoencoder(self, ae: dict[str, Any], pixels: torch.Tensor,
                           rng: torch.Generator, device: torch.device, progress: bool,
                           desc: str) -> tuple[nn.Module, torch.Tensor]:
        """Fit the site's ``AutoencoderKL`` (reconstruction MSE plus ``ae_kl`` times the
        KL term) and return it with the site's latents (posterior means, unscaled)."""
        cfg = self.config
        model = build_autoencoder(ae).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
        images = _pad(pixels, ae["sample_size"]).to(device)
        n, b = len(images), cfg.batch_size
        warmup = max(1, cfg.ae_steps // 20)
        bar = tqdm(range(cfg.ae_steps), desc=f"{desc} (autoencoder)", disable=not progress,
                   leave=False, file=sys.stderr)
        for step in bar:
            index = torch.randint(n, (b,), generator=rng).to(device)
            x = images[index]
            posterior = model.encode(x).latent_dist
            eps = torch.randn(posterior.mean.shape, generator=rng).to(device)
            recon = model.decode(posterior.mean + posterior.std * eps).sample
            kl = posterior.kl().mean() / posterior.mean[0].numel()
            loss = F.mse_loss(recon, x) + cfg.ae_kl * kl
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / warmup)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            opt.step()
            if step % REPORT_EVERY == 0 or step == cfg.ae_steps - 1:
                if not torch.isfinite(loss):
                    bar.close()
                    raise SynthlearnError(f"autoencoder training diverged by step {step + 1} "
                                          f"of {cfg.ae_steps}: try a lower lr")
                if progress:
                    bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.close()
        model.eval()
        with torch.no_grad():
            latents = torch.cat([model.encode(images[i:i + SAMPLE_BATCH]).latent_dist.mean
                                 for i in range(0, n, SAMPLE_BATCH)])
        return model, latents.cpu()

    def _train(self, arch: dict[str, Any], x: torch.Tensor, conditions: Conditions,
               rng: torch.Generator, device: torch.device, progress: bool, desc: str
               ) -> DiffusionNet:
        """Train the denoiser on ``x`` (images in [-1, 1], or scaled latents)."""
        cfg = self.config
        net = build_net(arch["unet"], arch["num_classes"], arch["vector_size"])
        ema = copy.deepcopy(net).eval().requires_grad_(False)
        net.to(device).train()
        ema.to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
        budget = cfg.steps_for(len(x))
        warmup = max(1, budget // 20)

        images = _pad(x, arch["unet"]["sample_size"]).to(device)
        labels = torch.from_numpy(conditions.labels.astype(np.int64)).to(device)
        vectors = torch.from_numpy(conditions.vectors.astype(np.float32)).to(device)
        rates = alphas_cumprod().float().to(device)
        null, n, b = arch["num_classes"], len(labels), cfg.batch_size
        steps_total = SCHEDULE["num_train_timesteps"]

        bar = tqdm(range(budget), desc=desc, disable=not progress, leave=False,
                   file=sys.stderr)
        watch = torch.zeros((), device=device)
        for step in bar:
            # every random draw comes from the local CPU generator: the same on any device
            index = torch.randint(n, (b,), generator=rng).to(device)
            drop = (torch.rand(b, generator=rng) < cfg.cond_drop).to(device)
            t = torch.randint(steps_total, (b,), generator=rng).to(device)
            noise = torch.randn((b, *images.shape[1:]), generator=rng).to(device)
            x0 = images[index]
            y = torch.where(drop, torch.full_like(labels[index], null), labels[index])
            v = vectors[index] * (~drop)[:, None]
            a = rates[t].sqrt()[:, None, None, None]
            s = (1.0 - rates[t]).sqrt()[:, None, None, None]
            target = a * noise - s * x0  # v = alpha * eps - sigma * x0
            loss = F.mse_loss(net(a * x0 + s * noise, t, y, v), target)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / warmup)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
            opt.step()
            _ema_update(ema, net, min(cfg.ema, (1.0 + step) / (EMA_WARMUP + step)))
            watch += loss.detach()
            if step % REPORT_EVERY == 0 or step == budget - 1:
                if not torch.isfinite(watch):
                    bar.close()
                    raise SynthlearnError(f"diffusion training diverged by step {step + 1} of "
                                          f"{budget} (loss {loss.item():.4g}): try a lower lr")
                if progress:
                    bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.close()
        return ema.to("cpu").eval()

    # --- sampling ------------------------------------------------------------------

    def sample(self, conditions: Conditions, seed: int, *,
               progress: bool | None = None) -> np.ndarray:
        """uint8 images (N, C, H, W), one per condition, deterministic in ``seed``.

        ``progress``: a bar over the sampler's steps; None follows the last ``fit``
        (a loaded generator shows it only on a terminal)."""
        net = self._net
        if net is None:
            raise SynthlearnError("the diffusion generator has not been fitted or loaded")
        cfg, arch = self.config, self._arch
        c, h, _ = arch["image_shape"]
        conditions.check(len(conditions), arch["num_classes"],
                         arch["vector_size"])
        n = len(conditions)
        side = arch["unet"]["sample_size"]
        ae = arch["autoencoder"]
        inner = latent_side(ae) if ae else h  # the side the sampler's output is cropped to
        channels = arch["unet"]["in_channels"]
        # guidance needs the null class, trained only when cond_drop > 0
        scale = float(cfg.guidance) if arch["config"]["cond_drop"] > 0 else 1.0
        rng = torch.Generator().manual_seed(seed)
        labels = torch.from_numpy(conditions.labels.astype(np.int64))
        vectors = torch.from_numpy(conditions.vectors.astype(np.float32))
        device = resolve_device(cfg.device)
        out = np.empty((n, c, h, h), dtype=np.uint8)
        batches = range(0, n, SAMPLE_BATCH)
        show = self._progress if progress is None else progress
        bar = tqdm(total=len(batches) * cfg.sample_steps, desc="sampling", leave=False,
                   disable=None if show is None else not show, file=sys.stderr)
        net.to(device).eval()
        try:
            with torch.inference_mode():
                for start in batches:
                    part = slice(start, start + SAMPLE_BATCH)
                    noise = torch.randn((len(labels[part]), channels, side, side),
                                        generator=rng)
                    x = self._denoise(net, noise.to(device), labels[part].to(device),
                                      vectors[part].to(device), scale, ae is None, bar)
                    x = _crop(x, inner)
                    if ae is not None:
                        x = net.autoencoder.decode(x / ae["scaling_factor"]).sample
                    x = ((_crop(x, h).float() + 1.0) * 127.5).round_().clamp_(0, 255)
                    out[part] = x.to(torch.uint8).cpu().numpy()
        finally:
            bar.close()
            net.to("cpu")
        return out

    def _denoise(self, net: DiffusionNet, x: torch.Tensor, labels: torch.Tensor,
                 vectors: torch.Tensor, scale: float, clip: bool, bar: tqdm) -> torch.Tensor:
        """Run the sampler from noise ``x`` to images in [-1, 1] (``clip``: pixel space)
        or latents, at the UNet's (padded) side."""
        cfg = self.config
        scheduler = make_sampler(cfg.sampler, cfg.sample_steps, clip=clip)
        x = x * scheduler.init_noise_sigma
        null = torch.full_like(labels, net.num_classes)
        zero = torch.zeros_like(vectors)
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(x, t)
            tt = torch.full((len(x),), int(t), device=x.device, dtype=torch.long)
            if scale == 1.0:
                v = net(inp, tt, labels, vectors)
            elif scale == 0.0:
                v = net(inp, tt, null, zero)
            else:  # conditional and unconditional in one batch
                both = net(torch.cat([inp, inp]), torch.cat([tt, tt]),
                           torch.cat([labels, null]), torch.cat([vectors, zero]))
                cond, uncond = both.chunk(2)
                v = uncond + scale * (cond - uncond)
            x = scheduler.step(v, t, x).prev_sample
            bar.update(1)
        return x

    # --- exchange ------------------------------------------------------------------

    def state(self) -> Payload:
        """The averaged network's weights plus the UNet config and sizes as JSON meta."""
        if self._net is None:
            raise SynthlearnError("the diffusion generator has not been fitted or loaded")
        tensors = {k: v.detach().cpu().clone().contiguous()
                   for k, v in self._net.state_dict().items()}
        meta = {"generator": NAME, "format": FORMAT, **copy.deepcopy(self._arch)}
        return Payload(tensors, meta)

    def load(self, payload: Payload, source: str) -> None:
        """Restore a fitted generator from ``state()``'s payload. The meta is checked
        against an allow-list and bounds, then the tensors against the layout it implies
        (built on the ``meta`` device), before the network is built; any problem is a
        one-line ``SynthlearnError`` naming ``source``."""
        arch = _parse_meta(payload.meta, source)
        _check_against_layout(arch, payload.tensors, source)
        try:
            with torch.random.fork_rng(devices=[]):
                net = build_net(arch["unet"], arch["num_classes"], arch["vector_size"],
                                arch["autoencoder"])
        except (ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise SynthlearnError(f"cannot build the diffusion network from its metadata: "
                                  f"{_one_line(exc)}", where=source) from None
        load_state(net, payload, source)
        self._net, self._arch, self._progress = net.eval(), arch, None


def _check_against_layout(arch: dict[str, Any], tensors: dict[str, torch.Tensor],
                          source: str) -> None:
    """Every tensor of the network ``arch`` describes (built on the meta device, which
    allocates nothing) present with its shape and dtype, and nothing else."""
    try:
        layout = build_net(arch["unet"], arch["num_classes"], arch["vector_size"],
                           arch["autoencoder"], device="meta").state_dict()
    except (ValueError, RuntimeError, TypeError, KeyError, ZeroDivisionError) as exc:
        raise SynthlearnError(f"cannot build the diffusion network from its metadata: "
                              f"{_one_line(exc)}", where=source) from None
    check_layout(layout, tensors, source)


def _parse_meta(meta: Any, source: str) -> dict[str, Any]:
    """The architecture from a payload's meta, every field checked (type, bounds, and
    agreement between the UNet config and the image shape); errors name ``source``."""

    def fail(message: str) -> SynthlearnError:
        return SynthlearnError(message, where=source)

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    if not isinstance(meta, dict):
        raise fail("diffusion payload metadata is not a JSON object")
    if meta.get("generator") != NAME:
        raise fail(f"not a diffusion generator payload (meta 'generator' is "
                   f"{short(meta.get('generator'))})")
    if meta.get("format") != FORMAT or isinstance(meta.get("format"), bool):
        raise fail(f"unsupported diffusion payload format {short(meta.get('format'))} "
                   f"(this version reads {FORMAT})")
    for key in ("unet", "autoencoder", "image_shape", "num_classes", "vector_size", "schedule",
                "config"):
        if key not in meta:
            raise fail(f"diffusion payload metadata has no {key!r}")
    shape = meta["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) for s in shape)):
        raise fail(f"diffusion payload 'image_shape' must be [C, H, W] integers, got "
                   f"{short(shape)}")
    k, d = meta["num_classes"], meta["vector_size"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_CLASSES:
        raise fail(f"diffusion payload 'num_classes' must be an integer in 1..{MAX_CLASSES}, "
                   f"got {short(k)}")
    if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_VECTOR:
        raise fail(f"diffusion payload 'vector_size' must be an integer in 0..{MAX_VECTOR}, "
                   f"got {short(d)}")
    if meta["schedule"] != SCHEDULE:
        raise fail(f"diffusion payload 'schedule' must be {SCHEDULE}, got "
                   f"{short(meta['schedule'])}")
    config = meta["config"]
    try:
        if not isinstance(config, dict):
            raise TypeError("not a JSON object")
        DiffusionConfig(**config)
    except (TypeError, ValueError) as exc:
        raise fail(f"diffusion payload 'config' is invalid: {_one_line(exc)}") from None
    unet = meta["unet"]
    problem = unet_config_problem(unet)
    if problem:
        raise fail(f"diffusion payload {problem}")
    levels = len(unet["block_out_channels"])
    problem = size_problem(tuple(shape), levels)
    if problem:
        raise fail(f"diffusion payload 'image_shape' {shape}: {problem}")
    ae = meta["autoencoder"]
    if ae is None:
        want_channels, want_side = shape[0], pad_side(shape[1], levels)
    else:
        problem = ae_config_problem(ae)
        if problem:
            raise fail(f"diffusion payload {problem}")
        ae_levels = len(ae["block_out_channels"])
        if ae["in_channels"] != shape[0] or ae["sample_size"] != pad_side(shape[1], ae_levels):
            raise fail(f"diffusion payload 'autoencoder' (in_channels {ae['in_channels']}, "
                       f"sample_size {ae['sample_size']}) does not fit 'image_shape' {shape}")
        want_channels, want_side = ae["latent_channels"], pad_side(latent_side(ae), levels)
    if unet["in_channels"] != want_channels or unet["sample_size"] != want_side:
        raise fail(f"diffusion payload 'unet' (in_channels {unet['in_channels']}, sample_size "
                   f"{unet['sample_size']}) does not fit 'image_shape' {shape}"
                   + ("" if ae is None else " and 'autoencoder'"))
    return {"unet": dict(unet), "autoencoder": None if ae is None else dict(ae),
            "image_shape": list(shape), "num_classes": k, "vector_size": d,
            "schedule": dict(SCHEDULE), "config": dict(config)}
