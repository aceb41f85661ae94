"""The ``gan`` generator plugin (synthlearn-gan): conditioning, determinism, exchange."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

pytest.importorskip("synthlearn_gan")

from synthlearn import SynthlearnError  # noqa: E402
from synthlearn.api import Conditions, Dataset, ImageData, Payload, Site  # noqa: E402
from synthlearn.testing import (  # noqa: E402
    check_arm,
    check_generator,
    class_conditions,
    installed,
    run_recipe,
    small_recipe,
    two_tone,
)
from synthlearn_gan import GanConfig, GanGenerator  # noqa: E402
from synthlearn_gan.networks import factor_side  # noqa: E402

#: A small, fast configuration for tests.
TINY = GanConfig(steps=4, batch_size=16, latent_dim=16, width=8, min_images=8, device="cpu")






def fitted(config: GanConfig = TINY, data: ImageData | None = None, seed: int = 0
           ) -> GanGenerator:
    """A generator fitted on ``data`` (default: 32 two-tone images)."""
    data = two_tone(32, side=28) if data is None else data
    generator = GanGenerator(config)
    generator.fit(data, class_conditions(data.labels), 2, seed, progress=False)
    return generator


@pytest.fixture(scope="module")
def tiny() -> GanGenerator:
    return fitted()


# --- conditioning ---------------------------------------------------------------------


def test_class_conditioning_controls_brightness() -> None:
    # 16x16 and 150 steps: the gap comes out at 1.2x the real one, both means within 7
    # of the real ones (after 5 steps: no gap, means 65 to 110 off)
    data = two_tone(128, side=16)
    config = attrs.evolve(TINY, steps=150, batch_size=32, lr_g=1e-3, lr_d=1e-3, ema=0.99)
    generator = fitted(config, data)
    images = generator.sample(class_conditions(np.repeat([0, 1], 64)), seed=1).astype(np.float64)
    dark, bright = images[:64].mean(), images[64:].mean()
    real = data.images.astype(np.float64)
    real_dark, real_bright = real[data.labels == 0].mean(), real[data.labels == 1].mean()
    assert bright - dark > 0.6 * (real_bright - real_dark), (dark, bright)
    assert abs(dark - real_dark) < 20, (dark, real_dark)
    assert abs(bright - real_bright) < 25, (bright, real_bright)


def test_condition_vectors_change_the_output() -> None:
    data = two_tone(32, side=28)
    rng = np.random.default_rng(0)
    conditions = Conditions(data.labels, rng.normal(size=(32, 3)).astype(np.float32))
    generator = GanGenerator(TINY)
    generator.fit(data, conditions, 2, seed=0, progress=False)
    labels = np.zeros(8, np.int64)
    a = generator.sample(Conditions(labels, np.full((8, 3), -1.0, np.float32)), seed=5)
    b = generator.sample(Conditions(labels, np.full((8, 3), 1.0, np.float32)), seed=5)
    assert a.shape == (8, 1, 28, 28)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0
    assert generator.state().meta["vector_size"] == 3
    with pytest.raises(SynthlearnError, match="size 0"):
        generator.sample(class_conditions(labels), seed=5)


# --- determinism and exchange ---------------------------------------------------------


def test_fit_is_deterministic_and_leaves_the_global_rng_alone(tiny: GanGenerator) -> None:
    before = torch.get_rng_state()
    again = fitted()
    assert torch.equal(before, torch.get_rng_state())
    assert again.state().to_bytes() == tiny.state().to_bytes()
    other = fitted(seed=1)
    assert other.state().to_bytes() != tiny.state().to_bytes()


def test_sampling_is_deterministic_per_seed(tiny: GanGenerator) -> None:
    conditions = class_conditions(np.arange(300) % 2)  # more than one sampling batch
    first = tiny.sample(conditions, seed=3)
    assert first.dtype == np.uint8 and first.shape == (300, 1, 28, 28)
    assert np.array_equal(first, tiny.sample(conditions, seed=3))
    assert not np.array_equal(first, tiny.sample(conditions, seed=4))
    assert tiny.sample(class_conditions(np.zeros(0, np.int64)), seed=3).shape == (0, 1, 28, 28)


def test_state_round_trip_gives_identical_samples(tiny: GanGenerator) -> None:
    payload = tiny.state()
    assert payload.meta == {"generator": "gan", "format": 1, "config": TINY.to_dict(),
                            "image_shape": [1, 28, 28], "num_classes": 2, "vector_size": 0}
    assert not any(name.startswith(("disc", "head")) for name in payload.tensors)
    received = Payload.from_bytes(payload.to_bytes(), "site 1")
    server = GanGenerator(GanConfig(width=64, latent_dim=128))  # architecture from meta
    server.load(received, "site 1")
    conditions = class_conditions(np.array([0, 1, 1, 0]))
    assert np.array_equal(server.sample(conditions, 7), tiny.sample(conditions, 7))


def test_sample_or_state_before_fit_is_an_error() -> None:
    with pytest.raises(SynthlearnError, match="not been fitted"):
        GanGenerator(TINY).sample(class_conditions(np.array([0])), seed=0)
    with pytest.raises(SynthlearnError, match="not been fitted"):
        GanGenerator(TINY).state()


def test_truncated_bytes_name_the_source(tiny: GanGenerator) -> None:
    data = tiny.state().to_bytes()
    with pytest.raises(SynthlearnError) as info:
        Payload.from_bytes(data[: len(data) // 2], "site 4")
    assert info.value.where == "site 4"


def _meta_without(meta: dict, key: str) -> dict:
    return {k: v for k, v in meta.items() if k != key}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: {**m, "format": 99}, "unsupported gan payload format 99"),
        (lambda m: _meta_without(m, "image_shape"), "no 'image_shape'"),
        (lambda m: {**m, "image_shape": [1, 30, 30]}, "image size 30x30 is not supported"),
        (lambda m: {**m, "num_classes": "2"}, "'num_classes' must be a positive integer"),
        (lambda m: {**m, "vector_size": -1}, "'vector_size' must be a non-negative"),
        (lambda m: {**m, "generator": "vae"}, "not a gan generator payload"),
        (lambda m: {**m, "config": {**m["config"], "loss": "wgan"}}, "'config' is invalid"),
        (lambda m: {**m, "config": {**m["config"], "width": 16}}, "weights do not fit"),
        (lambda m: {**m, "num_classes": 3}, "weights do not fit"),
    ],
)
def test_mismatched_meta_is_a_one_line_error_naming_the_source(
        tiny: GanGenerator, change, message: str) -> None:
    payload = Payload.from_bytes(tiny.state().to_bytes(), "site 2")
    bad = Payload.from_bytes(Payload(payload.tensors, change(payload.meta)).to_bytes(), "site 2")
    with pytest.raises(SynthlearnError, match=message) as info:
        GanGenerator(TINY).load(bad, "site 2")
    assert info.value.where == "site 2"
    assert "\n" not in str(info.value)


def test_wrong_or_missing_tensors_are_errors(tiny: GanGenerator) -> None:
    payload = tiny.state()
    tensors = dict(payload.tensors)
    tensors["out.weight"] = torch.zeros(2, 8, 3, 3)
    with pytest.raises(SynthlearnError, match="weights do not fit") as info:
        GanGenerator(TINY).load(Payload(tensors, payload.meta), "site 5")
    assert info.value.where == "site 5" and "\n" not in str(info.value)
    missing = {k: v for k, v in payload.tensors.items() if k != "fc.weight"}
    with pytest.raises(SynthlearnError, match="weights do not fit"):
        GanGenerator(TINY).load(Payload(missing, payload.meta), "site 5")
    nan = {**payload.tensors, "out.bias": torch.full((1,), float("nan"))}
    with pytest.raises(SynthlearnError, match="NaN"):
        GanGenerator(TINY).load(Payload(nan, payload.meta), "site 5")


# --- sizes and checks -----------------------------------------------------------------


@pytest.mark.parametrize(("channels", "side"), [(3, 32), (1, 64)])
def test_other_sizes_fit_and_sample(channels: int, side: int) -> None:
    data = two_tone(16, side=side, channels=channels)
    generator = fitted(attrs.evolve(TINY, steps=2, batch_size=8), data)
    images = generator.sample(class_conditions(np.array([0, 1, 1])), seed=0)
    assert images.dtype == np.uint8 and images.shape == (3, channels, side, side)


def test_supported_sides() -> None:
    assert factor_side(28) == (7, 2) and factor_side(32) == (4, 3)
    assert factor_side(128) == (4, 5) and factor_side(12) == (6, 1)
    assert [s for s in (6, 7, 9, 15, 30, 36, 100) if factor_side(s)] == []


def _dataset(data: ImageData) -> Dataset:
    return Dataset("toy", train=data, test=data, class_names=("dim", "bright"))


def test_check_rejects_unsupported_size_and_small_sites() -> None:
    generator = GanGenerator(GanConfig())
    odd = two_tone(40, side=30)
    with pytest.raises(SynthlearnError) as info:
        generator.check(_dataset(odd), [Site(0, odd)])
    assert str(info.value) == ("image size 30x30 is not supported by the gan generator: use a "
                               "square side b*2^k with b in 4..7, e.g. 28, 32, 64, 128")
    data = two_tone(60, side=28)
    sites = [Site(1, data.subset(np.arange(48))), Site(2, data.subset(np.arange(48, 60)))]
    generator.check(_dataset(data), sites[:1])
    with pytest.raises(SynthlearnError) as info:
        generator.check(_dataset(data), sites)
    assert str(info.value) == ("site 2 has 12 images; the gan generator needs at least 32 "
                               "(params.min_images)")
    with pytest.raises(SynthlearnError) as info:
        generator.fit(sites[1].data, class_conditions(sites[1].data.labels), 2, 0, progress=False)
    assert str(info.value) == "12 images; the gan generator needs at least 32 (params.min_images)"


def test_fit_rejects_bad_conditions() -> None:
    data = two_tone(16, side=28)
    with pytest.raises(SynthlearnError, match="labels must be in 0..1"):
        GanGenerator(TINY).fit(data, class_conditions(data.labels + 1), 2, 0, progress=False)
    with pytest.raises(SynthlearnError, match="8 conditions for 16 images"):
        GanGenerator(TINY).fit(data, class_conditions(data.labels[:8]), 2, 0, progress=False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"loss": "wgan"}, "'loss' must be one of hinge, nonsaturating"),
        ({"steps": 0}, "'steps' must be an integer >= 1"),
        ({"ema": 1.0}, r"'ema' must be in \[0, 1\)"),
        ({"lr_g": 0.0}, "'lr_g' must be a positive number"),
        ({"device": "tpu"}, "'device' must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ({"augment": "yes"}, "'augment' must be true or false"),
        ({"width": 2.5}, "'width' must be an integer"),
    ],
)
def test_config_validation(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GanConfig(**params)


def test_registered_as_a_generator() -> None:
    registered = installed("generator", "gan")
    assert registered.distribution == "synthlearn-gan"
    assert registered.spec.config is GanConfig and registered.spec.factory is GanGenerator


# --- conformance ------------------------------------------------------------------------

TINY_PARAMS = {"steps": 4, "batch_size": 16, "latent_dim": 16, "width": 8, "min_images": 8,
               "device": "cpu"}


def test_gan_conforms_to_the_generator_contract() -> None:
    check_generator(GanGenerator(TINY))


@pytest.mark.parametrize("share", ["generator", "samples"])
def test_synthetic_arm_with_the_gan_conforms_to_the_arm_contract(share: str) -> None:
    check_arm({"use": "synthetic", "params": {"share": share},
               "generator": {"use": "gan", "params": TINY_PARAMS}})


def test_a_recipe_with_the_gan_runs_in_process(tmp_path) -> None:
    arm = {"use": "synthetic", "generator": {"use": "gan", "params": TINY_PARAMS}}
    metrics = run_recipe(small_recipe(arms=[arm]), tmp_path=tmp_path)
    entry = metrics["arms"][0]
    assert entry["use"] == "synthetic" and entry["private"] is True
    assert "fidelity" in entry and len(entry["fidelity"]["sites"]) == 3
    assert (metrics.run_dir / "synthetic-synthetic.png").is_file()
