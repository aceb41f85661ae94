"""The built-in ``timm`` model component: any timm architecture, trained from scratch.

Small images and the stem
-------------------------
timm networks are made for 224 px: a ResNet stem (7x7 stride-2 conv, then a stride-2
max-pool) turns a 28x28 MedMNIST image into 7x7 before the first stage and 1x1 before
the last, losing fine detail. ``stem`` adapts CNNs of any timm family generically (the
first strided convolution met in a forward pass, and the max-pool that follows it
before any other downsampling, whatever their names):

* ``small`` (the ``auto`` choice for images up to 64 px a side): the first strided
  conv becomes a 3x3 stride-1 conv (same channels), the stem max-pool is kept, so one
  stride-2 remains: 28x28 enters a ResNet's first stage at 14x14. Families whose stem
  has no max-pool (EfficientNet, MobileNet, RegNet) then keep full resolution.
* ``full``: the max-pool is removed as well (28x28 into the first stage).
* ``imagenet``: the network as timm builds it (``auto`` for images over 64 px).

Size-aware models (ViT and other transformers, which accept ``img_size``) are built
for the image size and their stem is never touched (``describe()`` says ``native``).

Why ``small`` keeps one stride-2, measured with ``benchmarks/model_speed.py``
(train images/s: 2 pinned CPU threads of a Xeon, ``OMP_NUM_THREADS=2 taskset -c 0,1
... --device cpu --epochs 1``; accuracy: mean of seeds 0,1,2 on an H100, 28x28, AdamW
lr 2e-3, cosine, batch 64; ``strokes`` = 4-class orientation of a 3 px stroke in a
noisy blob, 2000 train / 1000 test, 15 epochs; ``digits`` = sklearn digits upscaled,
1347 / 450, 10 epochs)::

    arch                  stem      CPU train img/s  strokes acc  digits acc
    resnet18              imagenet             235        0.711       0.989
    resnet18              small                116        0.955       0.988
    resnet18              full                  45        0.971       0.986
    resnet10t             imagenet             448        0.831       0.993
    resnet10t             small                180        0.986       0.995
    resnet10t             full                  84        0.992       0.994
    mobilenetv3_small_100 imagenet             254            -       0.726
    mobilenetv3_small_100 small (= full)       235            -       0.926
    efficientnet_b0       imagenet               -            -       0.606
    efficientnet_b0       small (= full)         -            -       0.923

``small`` recovers nearly all the accuracy lost by the ImageNet stem on a task that
needs fine detail (+24 and +16 points) for about 2-2.5x the CPU cost; ``full`` adds
under 2 points for another 2-2.5x. On a GPU the three cost about the same at 28 px
(launch overhead dominates), so ``stem: full`` is worth trying there.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import timm
import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, GroupNormAct

from synthlearn.errors import SynthlearnError
from synthlearn.models.training import TrainSettings

STEMS: tuple[str, ...] = ("auto", "small", "full", "imagenet")
NORMS: tuple[str, ...] = ("batch", "group")

#: With ``stem: auto``, images whose larger side is at most this get the small stem.
SMALL_IMAGE_SIDE = 64

#: Side of the blank image used to find the stem of a network (large enough for any
#: ImageNet-style CNN to run, small enough to be quick).
_TRACE_SIDE = 128


def _train_field(name: str) -> Any:
    """An attrs field with the default, validator and doc of ``TrainSettings.<name>``."""
    field = getattr(attrs.fields(TrainSettings), name)
    return attrs.field(default=field.default, validator=field.validator,
                       metadata=dict(field.metadata))


@attrs.frozen
class TimmConfig:
    """Recipe params of ``model: {use: timm}``.

    ``arch`` is any name from ``timm.list_models()`` (always built with random weights,
    never downloaded). ``stem`` is ``auto`` (``small`` for images up to 64 px a side,
    else ``imagenet``), ``small`` (one stride-2 left in the stem), ``full`` (no
    downsampling in the stem) or ``imagenet`` (the network unchanged); see the module
    docstring. ``drop_rate`` is the dropout before the classifier. ``norm: group``
    replaces every BatchNorm with a GroupNorm (no statistics shared across a batch or
    kept between batches, as per-example differential privacy needs); the same network
    is built wherever the recipe is. The remaining fields are the ``TrainSettings`` (see
    ``synthlearn.models.training``), flattened so a recipe writes ``params: {arch:
    resnet18, epochs: 10, lr: 0.001}``.
    """

    arch: str = attrs.field(
        default="resnet18",
        metadata={"doc": "any name from `timm.list_models()`, built with random weights (never "
                         "downloaded)"})
    stem: str = attrs.field(
        default="auto", validator=attrs.validators.in_(STEMS),
        metadata={"doc": "`auto` (`small` up to 64 px a side, else `imagenet`), `small` (one "
                         "stride-2 left in the stem), `full` (no downsampling in the stem) or "
                         "`imagenet` (unchanged)"})
    drop_rate: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
        metadata={"doc": "dropout before the classifier"})
    norm: str = attrs.field(
        default="batch", validator=attrs.validators.in_(NORMS),
        metadata={"doc": "`batch` (the architecture's BatchNorm) or `group` (each BatchNorm "
                         "replaced by a GroupNorm of gcd(channels, 32) groups: nothing "
                         "computed across a batch, as differential privacy needs)"})
    epochs: int = _train_field("epochs")
    batch_size: int = _train_field("batch_size")
    lr: float = _train_field("lr")
    weight_decay: float = _train_field("weight_decay")
    optimizer: str = _train_field("optimizer")
    schedule: str = _train_field("schedule")
    augment: bool = _train_field("augment")
    device: str = _train_field("device")
    mixup: float = _train_field("mixup")
    label_smoothing: float = _train_field("label_smoothing")
    adapt_bn: bool = _train_field("adapt_bn")
    calibrate: bool = _train_field("calibrate")

    def __attrs_post_init__(self) -> None:
        if self.norm == "group" and self.adapt_bn:
            raise ValueError("'adapt_bn' refreshes BatchNorm statistics at the sites, and "
                             "norm: group leaves none: drop one of them")

    def train_settings(self) -> TrainSettings:
        """The training fields as a ``TrainSettings``."""
        names = [field.name for field in attrs.fields(TrainSettings)]
        return TrainSettings(**{name: getattr(self, name) for name in names})


def group_norms(model: nn.Module) -> int:
    """Replace every BatchNorm layer of ``model`` in place with a GroupNorm over the same
    channels (gcd(channels, 32) groups, affine, weight 1 and bias 0 like a fresh
    BatchNorm); timm's fused norm-activation layers keep their dropout and activation.
    Returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.modules.batchnorm._BatchNorm):
                continue
            channels = child.num_features
            groups = math.gcd(channels, 32)
            if isinstance(child, BatchNormAct2d):
                norm: nn.Module = GroupNormAct(channels, num_groups=groups, eps=child.eps,
                                               apply_act=False)
                norm.drop, norm.act = child.drop, child.act
            else:
                norm = nn.GroupNorm(groups, channels, eps=child.eps)
            setattr(parent, name, norm)
            replaced += 1
    return replaced


def _stride(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    return max(stride) if isinstance(stride, tuple) else int(stride)


def _is_downsampling(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and _stride(module) > 1


def _execution_order(model: nn.Module, in_chans: int) -> list[str]:
    """Names of the leaf modules in the order a forward pass first runs them."""
    order: list[str] = []
    seen: set[str] = set()

    def record(name: str) -> Any:
        def hook(*_args: Any) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if next(module.children(), None) is None
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans, _TRACE_SIDE, _TRACE_SIDE))
    except Exception:  # the network cannot run at the trace size: use definition order
        order = [name for name, module in model.named_modules() if _is_downsampling(module)]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return order


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def adapt_stem(model: nn.Module, in_chans: int, *, keep_pool: bool) -> list[str]:
    """Make an ImageNet CNN stem suit small images, in place.

    The first strided convolution (in execution order) becomes a 3x3 stride-1
    convolution with the same channels; unless ``keep_pool``, the max-pool that follows
    it before any other downsampling (the stem pool of ResNet/DenseNet-style networks)
    becomes ``nn.Identity``. Returns the names of the replaced modules (empty when the
    network has no strided convolution).
    """
    modules = dict(model.named_modules())
    conv_name: str | None = None
    pool_name: str | None = None
    for name in _execution_order(model, in_chans):
        module = modules[name]
        if conv_name is None:
            if isinstance(module, nn.Conv2d) and _stride(module) > 1:
                conv_name = name
            continue
        if isinstance(module, nn.MaxPool2d) and _stride(module) > 1:
            pool_name = name
        if _is_downsampling(module):
            break
    if conv_name is None:
        return []
    old = modules[conv_name]
    assert isinstance(old, nn.Conv2d)
    new = nn.Conv2d(
        old.in_channels,
        old.out_channels,
        kernel_size=3,
        stride=1,
        padding=1,
        groups=old.groups,
        bias=old.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    _set_submodule(model, conv_name, new)
    replaced = [conv_name]
    if pool_name is not None and not keep_pool:
        _set_submodule(model, pool_name, nn.Identity())
        replaced.append(pool_name)
    return replaced


def _unknown_arch(arch: str) -> SynthlearnError:
    return SynthlearnError(
        f"unknown timm architecture {arch!r} (e.g. resnet18, resnet10t, efficientnet_b0; "
        "see timm.list_models())"
    )


class TimmModel:
    """Factory of timm classifiers (kind ``model``, name ``timm``).

    ``TimmModel(config).build(in_chans, num_classes, image_size)`` returns a fresh,
    randomly initialised network; ``training`` says how to train it.
    """

    def __init__(self, config: TimmConfig) -> None:
        if not timm.is_model(config.arch):
            raise _unknown_arch(config.arch)
        self.config = config
        self.training: TrainSettings = config.train_settings()
        self._built: dict[str, Any] = {}

    def stem_for(self, image_size: tuple[int, int]) -> str:
        """``small``, ``full`` or ``imagenet``: the stem a CNN gets for this image size."""
        if self.config.stem != "auto":
            return self.config.stem
        return "small" if max(image_size) <= SMALL_IMAGE_SIDE else "imagenet"

    def build(self, in_chans: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
        """A new network for (N, in_chans, H, W) inputs with ``num_classes`` logits."""
        arch = self.config.arch
        if not timm.is_model(arch):
            raise _unknown_arch(arch)
        kwargs: dict[str, Any] = {
            "pretrained": False,
            "num_classes": num_classes,
            "in_chans": in_chans,
            "drop_rate": self.config.drop_rate,
        }
        try:
            # Transformers and other size-aware models take the image size directly.
            model = timm.create_model(arch, img_size=tuple(image_size), **kwargs)
            stem = "native"
        except TypeError:
            model = timm.create_model(arch, **kwargs)
            stem = self.stem_for(image_size)
        if stem in ("small", "full"):
            replaced = adapt_stem(model, in_chans, keep_pool=stem == "small")
            if not replaced:
                stem = "imagenet"
        if self.config.norm == "group":
            group_norms(model)
        self._built = {
            "stem": stem,
            "params": sum(p.numel() for p in model.parameters()),
            "image_size": list(image_size),
        }
        return model

    def describe(self) -> dict[str, Any]:
        """Architecture, the stem used, the normalisation and the parameter count of
        the last build."""
        return {"arch": self.config.arch, "stem": self.config.stem, "norm": self.config.norm,
                "params": None, **self._built}

