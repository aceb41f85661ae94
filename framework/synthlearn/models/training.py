"""Training and prediction loops for the downstream classifiers.

One loop serves every arm: centralized and local training, the server-side model of a
synthetic arm, and knowledge distillation (``soft_targets``). It is deterministic: the
same model, data, settings and seed give bitwise-identical weights on the same machine
(on CUDA, cuDNN is put in deterministic mode for the duration of the call; a few CUDA
kernels still use atomics, so GPU runs are reproducible only up to those).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator

import attrs
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.models.private import PrivateTraining, dp_steps_per_epoch
from synthlearn.params import device_name

#: The optimizers ``TrainSettings.optimizer`` accepts.
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")

#: Largest shift (pixels, each direction) applied by ``augment``.
SHIFT_PX = 2

#: Training images up to this size are copied to the GPU once; larger sets stay in host
#: memory and go over batch by batch.
GPU_RESIDENT_BYTES = 2 << 30


@attrs.frozen
class TrainSettings:
    """How a classifier is trained.

    ``optimizer`` is ``adamw`` or ``sgd`` (momentum 0.9); ``schedule`` is ``cosine``
    (per-step cosine decay to zero) or ``constant``; ``augment`` adds a random shift of
    up to 2 px (zero padding, i.e. black) and a random horizontal flip; ``device`` is
    ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    ``mixup > 0`` trains on convex mixtures of each batch with a shuffled copy of itself
    (weight ~ Beta(mixup, mixup), targets mixed alike); ``label_smoothing`` trains
    against ``1 - s`` on the label plus ``s / num_classes`` everywhere (hard labels only:
    an arm that trains on soft targets, e.g. kr, applies it to its hard-label part).

    ``adapt_bn`` and ``calibrate`` are steps the trained model takes at the sites before
    it is released (``synthlearn.arms.site_steps``): the sites re-estimate its batch-norm
    statistics on their own images, then fit one output bias per class to their own
    class mix; only aggregate statistics come back. Every arm applies them alike (a model
    at the server visits every site; a local arm's site applies them to its own model),
    so a recipe that sets them on ``model`` compares arms like for like.
    """

    epochs: int = attrs.field(
        default=10, validator=attrs.validators.ge(1),
        metadata={"doc": "training epochs"})
    batch_size: int = attrs.field(
        default=64, validator=attrs.validators.ge(1),
        metadata={"doc": "images per step"})
    lr: float = attrs.field(
        default=1e-3, validator=attrs.validators.gt(0.0),
        metadata={"doc": "learning rate"})
    weight_decay: float = attrs.field(
        default=1e-4, validator=attrs.validators.ge(0.0),
        metadata={"doc": "weight decay"})
    optimizer: str = attrs.field(
        default="adamw", validator=attrs.validators.in_(OPTIMIZERS),
        metadata={"doc": "`adamw`, or `sgd` (momentum 0.9)"})
    schedule: str = attrs.field(
        default="cosine", validator=attrs.validators.in_(SCHEDULES),
        metadata={"doc": "`cosine` (per-step cosine decay to zero) or `constant`"})
    augment: bool = attrs.field(
        default=False,
        metadata={"doc": "a random shift of up to 2 px (zero padding) and a random horizontal "
                         "flip"})
    device: str = attrs.field(
        default="auto", validator=device_name,
        metadata={"doc": "`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`"})
    mixup: float = attrs.field(
        default=0.0, validator=attrs.validators.ge(0.0),
        metadata={"doc": "> 0: train on convex mixtures of each batch with a shuffled copy of "
                         "itself (weight ~ Beta(mixup, mixup), targets mixed alike)"})
    label_smoothing: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
        metadata={"doc": "train against `1 - s` on the label plus `s / num_classes` everywhere "
                         "(the hard-label part of a soft target)"})
    adapt_bn: bool = attrs.field(
        default=False,
        metadata={"doc": "site step: each site re-estimates the released model's batch-norm "
                         "statistics on its own images (aggregates only come back)"})
    calibrate: bool = attrs.field(
        default=False,
        metadata={"doc": "site step: each site fits one output bias per class to its own class "
                         "mix (aggregates only come back)"})


def resolve_device(name: str) -> torch.device:
    """The torch device for a settings name (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Raises ``SynthlearnError`` when CUDA is asked for and not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SynthlearnError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SynthlearnError(
                f"device {name!r} asked for, but CUDA is not available here "
                "(use device: auto or cpu)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SynthlearnError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
    elif device.type != "cpu":
        raise SynthlearnError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 tensor scaled to [-1, 1]."""
    tensor = torch.as_tensor(images)
    return tensor.float().mul_(2.0 / 255.0).sub_(1.0)


def _batches(n: int, batch_size: int, order: torch.Tensor) -> list[torch.Tensor]:
    """Split a permutation into batches; a trailing batch of one joins the previous one
    (batch norm cannot train on a single sample)."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def _epoch_batches(n: int, batch_size: int, generator: torch.Generator,
                   private: PrivateTraining | None) -> list[torch.Tensor]:
    """One epoch's index batches: a shuffled split into batches, or under DP
    ``ceil(n / batch_size)`` Poisson-sampled ones (each image in with probability
    ``private.sample_rate``; a batch may be empty)."""
    if private is None:
        return _batches(n, batch_size, torch.randperm(n, generator=generator))
    return [torch.rand(n, generator=generator).lt(private.sample_rate).nonzero().flatten()
            for _ in range(dp_steps_per_epoch(n, batch_size))]


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift (up to ``SHIFT_PX``, zero-padded) and horizontal flip, per image.

    ``batch`` is uint8 (B, C, H, W); the random numbers come from ``generator`` (CPU)
    so the result does not depend on the device.
    """
    b, _, h, w = batch.shape
    pad = SHIFT_PX
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(batch.device)
    flips = torch.rand(b, generator=generator).lt(0.5).to(batch.device)
    padded = F.pad(batch, (pad, pad, pad, pad))
    rows = offsets[0, :, None] + torch.arange(h, device=batch.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=batch.device)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    index = torch.arange(b, device=batch.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return shifted.permute(0, 3, 1, 2)


def smoothed_onehot(labels: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    """(N, num_classes) float32 targets: ``1 - smoothing`` on each label plus
    ``smoothing / num_classes`` everywhere (plain one-hot for 0); rows sum to 1."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    labels = np.asarray(labels, np.int64)
    targets = np.full((len(labels), num_classes), smoothing / num_classes)
    targets[np.arange(len(labels)), labels] += 1.0 - smoothing
    return targets.astype(np.float32)


def _check_targets(data: ImageData, soft: np.ndarray | None, n: int) -> None:
    if len(data) != n:
        raise ValueError(f"a redrawn training set must keep {n} images, got {len(data)}")
    if soft is not None:
        shape = np.shape(soft)
        if len(shape) != 2 or shape[0] != n:
            raise ValueError(f"soft_targets must have shape ({n}, num_classes), got {shape}")


@contextlib.contextmanager
def deterministic_cudnn(active: bool) -> Iterator[None]:
    """With ``active``, run the block with cuDNN's deterministic algorithms and without
    its benchmark autotuning (same seed, same numbers on a GPU), then restore both."""
    if not active:
        yield
        return
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay
        )
    return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)


def train_classifier(
    model: nn.Module,
    data: ImageData,
    settings: TrainSettings,
    seed: int,
    *,
    soft_targets: np.ndarray | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    redraw: Callable[[int], tuple[ImageData, np.ndarray | None] | None] | None = None,
    private: PrivateTraining | None = None,
    progress: bool = True,
    desc: str = "train",
) -> nn.Module:
    """Train ``model`` in place on ``data`` and return it, on CPU and in eval mode.

    The loss is cross-entropy against the hard labels, or, when ``soft_targets``
    (N, num_classes probabilities) is given, against those (knowledge distillation).
    ``penalty(model)``, when given, is added to every batch's loss (e.g. FedProx's
    proximal term); it is called with the model on its training device.
    ``redraw(epoch)``, when given, is called before every epoch after the first: a
    returned ``(data, soft_targets)`` (the same number of images as ``data``) replaces
    the training set from that epoch on, ``None`` keeps the current one (knowledge
    recycling's fresh synthetic sets). ``settings.mixup > 0`` trains on convex mixtures
    of each batch with a shuffled copy of itself, the weight drawn per batch from
    Beta(mixup, mixup), targets mixed alike (hard labels as one-hot);
    ``settings.label_smoothing`` smooths hard labels (never ``soft_targets``).
    Shuffling and augmentation draw from a local ``torch.Generator`` seeded with
    ``seed``; ``torch.manual_seed(seed)`` covers the rest (dropout). On CUDA the loop
    uses mixed precision (bf16 where supported, else fp16 with loss scaling) and
    channels-last memory. An epoch whose mean loss is not finite stops the training
    with ``SynthlearnError("training diverged at epoch N of M ...")``.

    ``private`` (``synthlearn.models.private``) trains under differential privacy: each
    epoch is ``ceil(n / batch_size)`` steps, each on a Poisson-sampled batch (every image
    taken with probability ``private.sample_rate``, drawn from the seeded generator), and
    the mechanism clips each example's gradient and adds the planned noise;
    ``private.steps`` counts the steps taken. It refuses ``mixup``, ``penalty`` and
    ``redraw`` (each breaks the per-example bound) and runs without mixed precision.
    """
    n = len(data)
    if n < 2:
        raise SynthlearnError(f"cannot train a classifier on {n} image(s); need at least 2")
    if private is not None:
        refused = [what for what, on in (("mixup", settings.mixup > 0),
                                          ("a penalty", penalty is not None),
                                          ("redraw", redraw is not None)) if on]
        if refused:
            raise SynthlearnError(f"training under DP cannot take {', '.join(refused)}: a "
                                  "mixed or shared term breaks the per-example bound")
    mixup = settings.mixup
    smoothing = settings.label_smoothing if soft_targets is None else 0.0
    device = resolve_device(settings.device)
    on_cuda = device.type == "cuda"
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    model.train()

    # Everything the loop touches is prepared once per training set, on the device where
    # it fits.
    def prepare(data: ImageData, soft: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                  bool]:
        _check_targets(data, soft, n)
        images = torch.from_numpy(np.ascontiguousarray(data.images))
        resident = not on_cuda or data.images.nbytes <= GPU_RESIDENT_BYTES
        images = images.to(device) if resident else images.pin_memory()
        if soft is not None:
            targets = torch.from_numpy(np.asarray(soft, np.float32)).to(device)
        else:
            targets = torch.from_numpy(data.labels.astype(np.int64)).to(device)
        return images, targets, resident

    images, targets, resident = prepare(data, soft_targets)
    mixing = np.random.default_rng(seed) if mixup > 0 else None

    optimizer = _make_optimizer(model, settings)
    if private is None:
        steps_per_epoch = len(_batches(n, settings.batch_size, torch.arange(n)))
    else:
        steps_per_epoch = dp_steps_per_epoch(n, settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    scheduler = None
    if settings.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
        )

    amp = on_cuda and private is None
    amp_dtype = torch.bfloat16
    if amp and not torch.cuda.is_bf16_supported():
        amp_dtype = torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    session = None
    if private is not None:
        noise = torch.Generator(device=device).manual_seed(seed + 1)
        session = private.mechanism.attach(model, optimizer,
                                           noise_multiplier=private.noise_multiplier,
                                           expected_batch_size=settings.batch_size,
                                           generator=noise)
    forward = model if session is None else session.forward

    bar = tqdm(
        range(settings.epochs), desc=desc, disable=not progress, leave=False, file=sys.stderr
    )
    with deterministic_cudnn(on_cuda):
        for epoch in bar:
            fresh = redraw(epoch) if redraw is not None and epoch > 0 else None
            if fresh is not None:
                images, targets, resident = prepare(*fresh)
            loss_sum, seen = torch.zeros((), device=device), 0
            for host_index in _epoch_batches(n, settings.batch_size, generator, private):
                if session is not None and len(host_index) == 0:
                    session.empty_step()
                    private.steps += 1
                    if scheduler is not None:
                        scheduler.step()
                    continue
                index = host_index.to(device, non_blocking=True)
                batch = images[index] if resident else images[host_index].to(device)
                if settings.augment:
                    batch = _augment(batch, generator)
                inputs = to_float(batch)
                if mixing is not None:  # cross-entropy is linear in the target: mix losses
                    weight = float(mixing.beta(mixup, mixup))
                    partner = torch.randperm(len(index), generator=generator).to(device)
                    inputs = inputs * weight + inputs[partner] * (1.0 - weight)
                inputs = inputs.contiguous(memory_format=memory_format)
                if session is not None:
                    session.zero_grad()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    logits = forward(inputs).float()
                loss = F.cross_entropy(logits, targets[index], label_smoothing=smoothing)
                if mixing is not None:
                    loss = weight * loss + (1.0 - weight) * F.cross_entropy(
                        logits, targets[index[partner]], label_smoothing=smoothing)
                reported = loss.detach()
                if penalty is not None:
                    loss = loss + penalty(model)
                if session is not None:
                    loss.backward()
                    session.step()
                    private.steps += 1
                else:
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += reported * len(index)
                seen += len(index)
            mean_loss = loss_sum.item() / max(seen, 1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            if not math.isfinite(mean_loss):  # stop where it happens, not at evaluation
                bar.close()
                raise SynthlearnError(f"training diverged at epoch {epoch + 1} of "
                                      f"{settings.epochs} (loss {mean_loss}, lr "
                                      f"{settings.lr:g}): try a lower learning rate")
    bar.close()
    if session is not None:
        private.details = dict(session.finish())

    model.to(device="cpu", memory_format=torch.contiguous_format)
    model.eval()
    return model


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """The model's batch-norm layers that keep running statistics, with their names."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, _NORMS) and m.track_running_stats]


@contextlib.contextmanager
def evaluating_on(model: nn.Module, device: str | torch.device) -> Iterator[torch.device]:
    """Put ``model`` on ``device`` (a settings name or a torch device) in eval mode and
    yield the device; its original device and train/eval mode come back afterwards."""
    target = device if isinstance(device, torch.device) else resolve_device(device)
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.to(target).eval()
    try:
        yield target
    finally:
        model.to(home)
        model.train(was_training)


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, images: np.ndarray, *, batch_size: int = 256,
                      device: str | torch.device = "cpu") -> int:
    """Recompute every batch-norm layer's running mean and variance as the exact average
    over ``images`` (uint8, N x C x H x W) under the model's current weights; returns
    the number of layers refreshed (0: the model has none, and nothing changes).

    Training leaves running statistics that lag the weights (an exponential average
    taken while the weights moved); after a short training run, or after weights are
    averaged across sites, they can be far off and ruin eval-mode predictions. Only
    the batch-norm layers run in training mode; dropout and the like stay in eval mode.
    The model's device and train/eval mode are restored.
    """
    norms = [m for _, m in batchnorm_layers(model)]
    if not norms or len(images) == 0:
        return 0
    momenta = [m.momentum for m in norms]
    with evaluating_on(model, device) as target:
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the batches below
                m.train()
            for start in range(0, len(images), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
                if len(chunk) > 1 or start == 0:
                    model(to_float(chunk.to(target)))
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
    return len(norms)


def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """The model's raw outputs (N, num_classes), float64, for uint8 ``images``.

    The model runs in eval mode on ``device`` (a settings name or a torch device); its
    original device and train/eval mode are restored afterwards.
    """
    outputs: list[np.ndarray] = []
    with evaluating_on(model, device) as target, torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            outputs.append(model(to_float(chunk.to(target))).double().cpu().numpy())
    if not outputs:
        raise ValueError("predict_logits needs at least one image")
    return np.concatenate(outputs)


def predict_proba(
    model: nn.Module,
    images: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """Softmax class probabilities (N, num_classes), float64, for uint8 ``images``
    (``predict_logits`` then a softmax in float64)."""
    logits = predict_logits(model, images, device=device, batch_size=batch_size)
    return torch.from_numpy(logits).softmax(dim=1).numpy()
