"""Training loop, prediction, metrics and the timm model component."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.evaluation.metrics import classification_metrics
from synthlearn.models.timm_model import TimmConfig, TimmModel
from synthlearn.models.training import (
    TrainSettings,
    predict_proba,
    resolve_device,
    to_float,
    train_classifier,
)
from timm.layers import GroupNormAct

CPU = {"device": "cpu"}


def tiny_cnn(in_chans: int, num_classes: int) -> nn.Module:
    """A few-thousand-parameter CNN: the loop is under test, not the architecture."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


@pytest.fixture(scope="module")
def digits() -> tuple[ImageData, ImageData]:
    """scikit-learn digits, 8x8 uint8, first 1200 for training, the rest for testing."""
    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    data = ImageData(images=images, labels=bunch.target.astype(np.int64))
    return data.subset(np.arange(1200)), data.subset(np.arange(1200, len(data)))


def separable(n: int, seed: int = 0) -> ImageData:
    """Class 1 images are bright, class 0 dark, both noisy: trivially separable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.normal(80 + 100 * labels[:, None, None, None], 25, (n, 1, 8, 8))
    return ImageData(images=np.clip(images, 0, 255).astype(np.uint8), labels=labels)


def accuracy(model: nn.Module, data: ImageData) -> float:
    return classification_metrics(predict_proba(model, data.images), data.labels)["accuracy"]


# --- training ---------------------------------------------------------------------------


def _trained_resnet(data: ImageData, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # same initial weights every time
    model = TimmModel(TimmConfig(arch="test_resnet", stem="imagenet")).build(1, 10, (16, 16))
    settings = TrainSettings(epochs=2, batch_size=32, augment=True, **CPU)
    trained = train_classifier(model, data, settings, seed, progress=False)
    assert trained is model and not model.training
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(0)
    # 65 images in batches of 32: the trailing batch of one must join the previous one.
    data = ImageData(
        images=rng.integers(0, 256, (65, 1, 16, 16), dtype=np.uint8),
        labels=rng.integers(0, 10, 65),
    )
    first, again, other = (_trained_resnet(data, seed) for seed in (3, 3, 4))
    assert all(v.device.type == "cpu" for v in first.values())
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize(
    "settings",
    [
        TrainSettings(epochs=6, batch_size=32, lr=3e-3, **CPU),
        TrainSettings(epochs=6, batch_size=32, lr=0.05, optimizer="sgd", schedule="constant",
                      **CPU),
    ],
    ids=["adamw-cosine", "sgd-constant"],
)
def test_model_learns_digits(digits: tuple[ImageData, ImageData], settings: TrainSettings) -> None:
    train, test = digits
    torch.manual_seed(0)
    model = train_classifier(tiny_cnn(1, 10), train, settings, 0, progress=False)
    assert accuracy(model, test) > 0.7  # chance is 0.1


def test_soft_targets_replace_labels() -> None:
    train, test = separable(256), separable(200, seed=1)
    soft = np.where(train.labels[:, None] == 1, [0.1, 0.9], [0.9, 0.1])
    # The hard labels are all wrong (zeros): only the soft targets carry the classes.
    blind = ImageData(images=train.images, labels=np.zeros(len(train), dtype=np.int64))
    torch.manual_seed(0)
    model = train_classifier(
        tiny_cnn(1, 2), blind, TrainSettings(epochs=4, batch_size=32, lr=3e-3, **CPU), 0,
        soft_targets=soft, progress=False,
    )
    assert accuracy(model, test) > 0.95
    probs = predict_proba(model, test.images)
    assert 0.6 < probs.max(axis=1).mean() < 0.97  # calibrated towards 0.9, not to 1


def test_soft_targets_shape_is_checked() -> None:
    data = separable(16)
    with pytest.raises(ValueError, match="soft_targets"):
        train_classifier(tiny_cnn(1, 2), data, TrainSettings(epochs=1, **CPU), 0,
                         soft_targets=np.ones((15, 2)) / 2, progress=False)


def test_redraw_replaces_the_training_set_from_that_epoch() -> None:
    train, test = separable(256), separable(200, seed=1)
    # The first set's labels are all wrong; from epoch 1 the real set replaces it.
    blind = ImageData(images=train.images, labels=1 - train.labels)
    calls: list[int] = []

    def redraw(epoch: int) -> tuple[ImageData, None] | None:
        calls.append(epoch)
        return (train, None) if epoch == 1 else None

    torch.manual_seed(0)
    model = train_classifier(tiny_cnn(1, 2), blind, TrainSettings(epochs=10, batch_size=32,
                                                                  lr=3e-3, **CPU), 0,
                             redraw=redraw, progress=False)
    assert calls == list(range(1, 10))
    assert accuracy(model, test) > 0.95  # learnt from the redrawn set, not the first
    with pytest.raises(ValueError, match="must keep 256 images"):
        train_classifier(tiny_cnn(1, 2), train, TrainSettings(epochs=2, **CPU), 0,
                         redraw=lambda epoch: (separable(100), None), progress=False)


def test_mixup_learns_and_changes_the_weights() -> None:
    train, test = separable(256), separable(200, seed=1)
    weights = []
    for mixup in (0.0, 0.4, 0.4):
        torch.manual_seed(0)
        settings = TrainSettings(epochs=4, batch_size=32, lr=3e-3, mixup=mixup, **CPU)
        model = train_classifier(tiny_cnn(1, 2), train, settings, 0, progress=False)
        weights.append(model[-1].weight.detach().clone())
        assert accuracy(model, test) > 0.95
    assert torch.equal(weights[1], weights[2])  # deterministic
    assert not torch.equal(weights[0], weights[1])
    with pytest.raises(ValueError, match="mixup"):
        TrainSettings(mixup=-1.0)


def test_predict_proba_rows_sum_to_one() -> None:
    data = separable(37)
    model = tiny_cnn(1, 3)
    model.train()
    probs = predict_proba(model, data.images, batch_size=16)
    assert probs.shape == (37, 3) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert model.training  # mode restored


def test_to_float_range() -> None:
    out = to_float(np.array([0, 255, 51], dtype=np.uint8).reshape(1, 1, 1, 3))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, -0.6]))


def test_settings_and_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="optimizer"):
        TrainSettings(optimizer="rmsprop")
    with pytest.raises(ValueError, match="device"):
        TrainSettings(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SynthlearnError, match="CUDA is not available"):
            resolve_device("cuda:0")
    config = TimmConfig(arch="resnet10t", epochs=3, lr=0.01, optimizer="sgd")
    assert config.train_settings() == TrainSettings(epochs=3, lr=0.01, optimizer="sgd")
    assert TimmModel(config).training == config.train_settings()
    with pytest.raises(ValueError, match="schedule"):
        TimmConfig(schedule="step")


# --- timm models and the stem -----------------------------------------------------------


def _first_stage_input(model: nn.Module, stage: nn.Module, side: int) -> tuple[int, ...]:
    seen: list[tuple[int, ...]] = []
    handle = stage.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, side, side))
    handle.remove()
    return tuple(seen[0][2:])


def test_small_stem_keeps_resolution() -> None:
    sizes = {}
    for stem in ("imagenet", "small", "full"):
        factory = TimmModel(TimmConfig(arch="resnet18", stem=stem))
        model = factory.build(1, 2, (28, 28))
        sizes[stem] = _first_stage_input(model, model.layer1, 28)
        assert factory.describe()["stem"] == stem
        assert factory.describe()["params"] == sum(p.numel() for p in model.parameters())
        if stem != "imagenet":
            assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
            assert model.conv1.in_channels == 1 and model.conv1.out_channels == 64
    assert sizes == {"imagenet": (7, 7), "small": (14, 14), "full": (28, 28)}
    assert isinstance(TimmModel(TimmConfig(stem="full")).build(1, 2, (28, 28)).maxpool,
                      nn.Identity)


def test_stem_auto_and_other_families() -> None:
    factory = TimmModel(TimmConfig(arch="mobilenetv3_small_050"))
    assert factory.stem_for((28, 28)) == "small" and factory.stem_for((128, 128)) == "imagenet"
    model = factory.build(3, 4, (28, 28))
    assert model.conv_stem.stride == (1, 1)
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 4)
    # resnet10t's deep stem: only its first (strided) conv is replaced.
    deep = TimmModel(TimmConfig(arch="resnet10t")).build(1, 2, (28, 28))
    assert deep.conv1[0].stride == (1, 1) and deep.conv1[3].stride == (1, 1)
    assert isinstance(deep.maxpool, nn.MaxPool2d)


def test_norm_group_replaces_every_batchnorm_the_same_way_everywhere() -> None:
    def norms(model: nn.Module) -> set[str]:
        return {type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}

    for arch in ("resnet10t", "mobilenetv3_small_050"):
        plain = TimmModel(TimmConfig(arch=arch)).build(1, 2, (28, 28))
        factory = TimmModel(TimmConfig(arch=arch, norm="group"))
        torch.manual_seed(3)
        grouped = factory.build(1, 2, (28, 28))
        assert factory.describe()["norm"] == "group"
        assert norms(plain) & {"BatchNorm2d", "BatchNormAct2d"}, arch
        assert norms(grouped) <= {"GroupNorm", "GroupNormAct"}, arch
        if arch.startswith("mobilenet"):  # timm's fused norm + activation keeps its act
            fused = [m for m in grouped.modules() if isinstance(m, GroupNormAct)]
            assert fused and not isinstance(fused[0].act, nn.Identity)
        for layer in (m for m in grouped.modules() if isinstance(m, nn.GroupNorm)):
            assert layer.num_channels % layer.num_groups == 0 and layer.num_groups <= 32
        torch.manual_seed(3)
        again = factory.build(1, 2, (28, 28))  # the server and a site build the same net
        assert all(torch.equal(a, b) for a, b in zip(grouped.state_dict().values(),
                                                     again.state_dict().values(), strict=True))
        grouped.train()
        out = grouped(torch.rand(1, 1, 28, 28))  # one image: no batch statistics needed
        assert out.shape == (1, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="'adapt_bn' refreshes BatchNorm statistics"):
        TimmConfig(norm="group", adapt_bn=True)
    with pytest.raises(ValueError, match="'norm' must be in"):
        TimmConfig(norm="layer")


def test_unknown_arch_is_one_clear_line() -> None:
    with pytest.raises(SynthlearnError, match="unknown timm architecture 'resnet19'") as info:
        TimmModel(TimmConfig(arch="resnet19")).build(1, 2, (28, 28))
    assert "\n" not in str(info.value) and "timm.list_models()" in str(info.value)


# --- metrics ----------------------------------------------------------------------------


def test_binary_metrics_by_hand() -> None:
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    metrics = classification_metrics(np.stack([1 - p1, p1], axis=1), np.array([0, 0, 1, 1]))
    # predictions 0,1,0,1; AUC: 3 of the 4 (negative, positive) pairs are ordered right.
    assert metrics == {"accuracy": 0.5, "balanced_accuracy": 0.5, "auc": 0.75}
    assert all(type(v) is float for v in metrics.values())


def test_balanced_accuracy_by_hand() -> None:
    probs = np.array([[0.9, 0.1]] * 4)
    metrics = classification_metrics(probs, np.array([0, 0, 0, 1]))
    assert metrics["accuracy"] == 0.75 and metrics["balanced_accuracy"] == 0.5
    assert metrics["auc"] == 0.5  # all scores tied


def test_multiclass_metrics_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 2, 2])
    metrics = classification_metrics(probs, labels)
    assert metrics["accuracy"] == 0.75
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    # one-vs-rest AUCs: class 0 -> 1, class 1 -> 2/3, class 2 -> 3.5/4 (one tie)
    assert metrics["auc"] == pytest.approx((1 + 2 / 3 + 0.875) / 3)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    # A class absent from the labels is left out of the macro average.
    absent = classification_metrics(probs, np.array([0, 1, 1, 1]))
    assert absent["auc"] == pytest.approx((1 + 2 / 3) / 2)


def test_single_class_auc_is_nan() -> None:
    metrics = classification_metrics(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 0]))
    assert metrics["accuracy"] == 0.5 and metrics["balanced_accuracy"] == 0.5
    assert math.isnan(metrics["auc"])


def test_smoothed_onehot_rows_sum_to_one() -> None:
    from synthlearn.models.training import smoothed_onehot

    targets = smoothed_onehot(np.array([0, 2, 1]), 3, 0.3)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[1], [0.1, 0.1, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(smoothed_onehot(np.array([1]), 2, 0.0), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="smoothing"):
        smoothed_onehot(np.array([0]), 2, 1.0)
