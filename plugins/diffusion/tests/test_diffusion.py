"""The ``diffusion`` generator plugin (synthlearn-diffusion): the contract, guidance,
determinism, exchange and its checks, a synthetic arm with it. A tiny UNet and a few
steps keep the file to seconds on one CPU thread."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

pytest.importorskip("synthlearn_diffusion")
pytest.importorskip("diffusers")

from synthlearn import SynthlearnError  # noqa: E402
from synthlearn.api import Conditions, Dataset, ImageData, Payload, Site  # noqa: E402
from synthlearn.testing import (  # noqa: E402
    check_generator,
    class_conditions,
    installed,
    run_recipe,
    small_recipe,
    two_tone,
)
from synthlearn_diffusion import DiffusionConfig, DiffusionGenerator  # noqa: E402
from synthlearn_diffusion.networks import (  # noqa: E402
    SCHEDULE,
    alphas_cumprod,
    pad_side,
    unet_config,
)

#: A small, fast configuration for tests: two levels of 8 and 16 channels, no attention.
TINY = DiffusionConfig(steps=4, batch_size=16, width=8, levels=2, attention=False,
                       sample_steps=3, min_images=8, device="cpu")






def fitted(config: DiffusionConfig = TINY, data: ImageData | None = None, seed: int = 0
           ) -> DiffusionGenerator:
    data = two_tone() if data is None else data
    generator = DiffusionGenerator(config)
    generator.fit(data, class_conditions(data.labels), 2, seed, progress=False)
    return generator


@pytest.fixture(scope="module")
def tiny() -> DiffusionGenerator:
    return fitted()


# --- the contract -----------------------------------------------------------------------


def test_diffusion_conforms_to_the_generator_contract() -> None:
    check_generator(DiffusionGenerator(TINY))


def test_registered_as_a_generator() -> None:
    registered = installed("generator", "diffusion")
    assert registered.distribution == "synthlearn-diffusion"
    assert registered.spec.config is DiffusionConfig
    assert isinstance(registered.spec.factory(TINY), DiffusionGenerator)


# --- guidance and conditioning ------------------------------------------------------------


def test_guidance_strengthens_class_fidelity() -> None:
    # dim (class 0) vs bright (class 1) discs; 60 steps of a tiny UNet. Measured (mean
    # pixel, class 1 minus class 0): guidance 0 -1.5 (unconditional: no separation),
    # 1 12.8, 3 26.5; the real gap is 39.4
    data = two_tone(128)
    config = attrs.evolve(TINY, steps=60, lr=2e-3, ema=0.99, cond_drop=0.2, sample_steps=8)
    generator = fitted(config, data)
    conditions = class_conditions(np.repeat([0, 1], 32))
    gap = {}
    for scale in (0.0, 1.0, 3.0):
        generator.config = attrs.evolve(config, guidance=scale)
        images = generator.sample(conditions, seed=1).astype(np.float64)
        gap[scale] = images[32:].mean() - images[:32].mean()
    assert abs(gap[0.0]) < 6, gap
    assert gap[1.0] > gap[0.0] + 6, gap
    assert gap[3.0] > gap[1.0] + 6, gap


def test_condition_vectors_change_the_output() -> None:
    data = two_tone()
    rng = np.random.default_rng(0)
    conditions = Conditions(data.labels, rng.normal(size=(32, 3)).astype(np.float32))
    generator = DiffusionGenerator(TINY)
    generator.fit(data, conditions, 2, seed=0, progress=False)
    labels = np.zeros(4, np.int64)
    a = generator.sample(Conditions(labels, np.full((4, 3), -2.0, np.float32)), seed=5)
    b = generator.sample(Conditions(labels, np.full((4, 3), 2.0, np.float32)), seed=5)
    assert a.shape == (4, 1, 16, 16)
    assert not np.array_equal(a, b)
    assert generator.state().meta["vector_size"] == 3
    assert "vector_proj.weight" in generator.state().tensors
    with pytest.raises(SynthlearnError, match="size 0"):
        generator.sample(class_conditions(labels), seed=5)


# --- determinism and exchange ---------------------------------------------------------


def test_fit_is_deterministic_and_leaves_the_global_rng_alone(tiny: DiffusionGenerator
                                                              ) -> None:
    before = torch.get_rng_state()
    again = fitted()
    assert torch.equal(before, torch.get_rng_state())
    assert again.state().to_bytes() == tiny.state().to_bytes()
    assert fitted(seed=1).state().to_bytes() != tiny.state().to_bytes()


def test_max_epochs_caps_the_updates_by_the_size_of_the_site(tiny: DiffusionGenerator
                                                              ) -> None:
    # 32 images, batch 16: one pass is 2 updates; max_epochs 1.5 allows ceil(3) = 3 of
    # the 20 steps, so the fit is exactly a 3-step fit, and not the 4-step one
    capped = fitted(attrs.evolve(TINY, steps=20, max_epochs=1.5))
    assert TINY.steps_for(32) == 4 and attrs.evolve(TINY, max_epochs=1.5).steps_for(32) == 3
    three = fitted(attrs.evolve(TINY, steps=3, max_epochs=1.5))
    assert capped.state().tensors.keys() == three.state().tensors.keys()
    assert all(torch.equal(capped.state().tensors[k], three.state().tensors[k])
               for k in three.state().tensors)
    assert not torch.equal(next(iter(capped.state().tensors.values())),
                           next(iter(tiny.state().tensors.values())))
    assert attrs.evolve(TINY, steps=4, max_epochs=100.0).steps_for(32) == 4


def test_sampling_is_deterministic_per_seed(tiny: DiffusionGenerator) -> None:
    conditions = class_conditions(np.arange(140) % 2)  # more than one sampling batch
    first = tiny.sample(conditions, seed=3)
    assert first.dtype == np.uint8 and first.shape == (140, 1, 16, 16)
    assert np.array_equal(first, tiny.sample(conditions, seed=3))
    assert not np.array_equal(first, tiny.sample(conditions, seed=4))
    assert tiny.sample(class_conditions(np.zeros(0, np.int64)), seed=3).shape == (0, 1, 16, 16)


def test_state_round_trip_gives_identical_samples(tiny: DiffusionGenerator) -> None:
    payload = tiny.state()
    meta = payload.meta
    assert meta["generator"] == "diffusion" and meta["format"] == 1
    assert meta["unet"] == unet_config(1, 16, 8, 2, 1, False)
    assert meta["autoencoder"] is None and not any("autoencoder" in k for k in payload.tensors)
    assert meta["schedule"] == SCHEDULE and meta["config"] == TINY.to_dict()
    received = Payload.from_bytes(payload.to_bytes(), "site 1")
    server = DiffusionGenerator(attrs.evolve(TINY, width=64, levels=4))  # arch from meta
    server.load(received, "site 1")
    conditions = class_conditions(np.array([0, 1, 1, 0]))
    assert np.array_equal(server.sample(conditions, 7), tiny.sample(conditions, 7))
    # the sampling side's sampler settings apply to a loaded generator
    server.config = attrs.evolve(TINY, sampler="ddim", sample_steps=4)
    assert not np.array_equal(server.sample(conditions, 7), tiny.sample(conditions, 7))


def test_sample_or_state_before_fit_is_an_error() -> None:
    with pytest.raises(SynthlearnError, match="not been fitted"):
        DiffusionGenerator(TINY).sample(class_conditions(np.array([0])), seed=0)
    with pytest.raises(SynthlearnError, match="not been fitted"):
        DiffusionGenerator(TINY).state()


def _without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def _unet(change):
    return lambda m: {**m, "unet": change(dict(m["unet"]))}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: {**m, "format": 99}, "unsupported diffusion payload format 99"),
        (lambda m: {**m, "generator": "gan"}, "not a diffusion generator payload"),
        (lambda m: _without(m, "unet"), "has no 'unet'"),
        (lambda m: {**m, "num_classes": 10 ** 9}, "'num_classes' must be an integer"),
        (lambda m: {**m, "num_classes": 3}, "weights do not fit"),
        (lambda m: {**m, "vector_size": -1}, "'vector_size' must be an integer"),
        (lambda m: {**m, "image_shape": [1, 16, 20]}, "square images only"),
        (lambda m: {**m, "image_shape": [3, 16, 16]}, "does not fit 'image_shape'"),
        (lambda m: {**m, "schedule": {**m["schedule"], "prediction_type": "epsilon"}},
         "'schedule' must be"),
        (lambda m: {**m, "config": {**m["config"], "sampler": "euler"}}, "'config' is invalid"),
        (_unet(lambda u: {**u, "block_out_channels": [8] * 5000}),
         "block_out_channels must be 2 to 6"),
        (_unet(lambda u: {**u, "block_out_channels": [8, 10 ** 7]}),
         "block_out_channels must be 2 to 6"),
        (_unet(lambda u: {**u, "_class_name": "os.system"}), "unexpected key '_class_name'"),
        (_unet(lambda u: _without(u, "layers_per_block")), "missing key 'layers_per_block'"),
        (_unet(lambda u: {**u, "layers_per_block": 2}), "weights do not fit"),
        (_unet(lambda u: {**u, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"]}),
         "down_block_types must be"),
        (_unet(lambda u: {**u, "sample_size": 4096}), "sample_size must be"),
        (_unet(lambda u: {**u, "time_embedding_dim": 64}), "weights do not fit"),
        (lambda m: {**m, "unet": "UNet2DModel"}, "'unet' is not a JSON object"),
    ],
)
def test_tampered_meta_is_a_one_line_error_naming_the_source(
        tiny: DiffusionGenerator, change, message: str) -> None:
    payload = Payload.from_bytes(tiny.state().to_bytes(), "site 2")
    bad = Payload.from_bytes(Payload(payload.tensors, change(payload.meta)).to_bytes(), "site 2")
    with pytest.raises(SynthlearnError, match=message) as info:
        DiffusionGenerator(TINY).load(bad, "site 2")
    assert info.value.where == "site 2"
    assert "\n" not in str(info.value)


def test_tampered_tensors_are_one_line_errors(tiny: DiffusionGenerator) -> None:
    payload = tiny.state()
    tensors = dict(payload.tensors)
    cases = {
        "weights do not fit": {**tensors, "class_embed.weight": torch.zeros(4, 32)},
        "no tensor 'class_embed.weight'": _without(tensors, "class_embed.weight"),
        "unexpected tensor 'extra'": {**tensors, "extra": torch.zeros(1)},
        "NaN": {**tensors, "class_embed.weight":
                torch.full_like(tensors["class_embed.weight"], float("nan"))},
        "float64": {**tensors, "class_embed.weight":
                    tensors["class_embed.weight"].double()},
    }
    for message, bad in cases.items():
        with pytest.raises(SynthlearnError, match=message) as info:
            DiffusionGenerator(TINY).load(Payload(bad, payload.meta), "site 5")
        assert info.value.where == "site 5" and "\n" not in str(info.value), message
    data = payload.to_bytes()
    with pytest.raises(SynthlearnError) as info:
        Payload.from_bytes(data[: len(data) // 2], "site 4")
    assert info.value.where == "site 4"


# --- sizes and checks -----------------------------------------------------------------


def test_padding_to_the_unet_side() -> None:
    assert [pad_side(s, 3) for s in (28, 32, 64)] == [28, 32, 64]
    assert [pad_side(s, 4) for s in (28, 32, 64)] == [32, 32, 64]
    assert pad_side(28, 5) == 32


@pytest.mark.parametrize(("channels", "side", "levels"), [(3, 32, 2), (1, 28, 4), (1, 64, 2)])
def test_other_sizes_fit_and_sample(channels: int, side: int, levels: int) -> None:
    data = two_tone(8, side=side, channels=channels)
    config = attrs.evolve(TINY, steps=1, batch_size=4, levels=levels, sample_steps=1)
    generator = fitted(config, data)
    images = generator.sample(class_conditions(np.array([0, 1])), seed=0)
    assert images.dtype == np.uint8 and images.shape == (2, channels, side, side)


def test_schedule_matches_diffusers() -> None:
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(**SCHEDULE).alphas_cumprod.double()
    assert torch.allclose(alphas_cumprod(), reference, rtol=1e-5, atol=1e-7)


def _dataset(data: ImageData) -> Dataset:
    return Dataset("toy", train=data, test=data, class_names=("dim", "bright"))


def test_check_rejects_unsupported_shapes_and_small_sites() -> None:
    generator = DiffusionGenerator(DiffusionConfig())
    odd = ImageData(images=np.zeros((40, 1, 16, 20), np.uint8), labels=np.zeros(40, np.int64))
    with pytest.raises(SynthlearnError) as info:
        generator.check(_dataset(odd), [Site(0, odd)])
    assert str(info.value) == ("image size 16x20 is not supported by the diffusion generator: "
                               "square images only (e.g. 28, 32, 64)")
    data = two_tone(60)
    sites = [Site(1, data.subset(np.arange(48))), Site(2, data.subset(np.arange(48, 60)))]
    generator.check(_dataset(data), sites[:1])
    with pytest.raises(SynthlearnError) as info:
        generator.check(_dataset(data), sites)
    assert str(info.value) == ("site 2 has 12 images; the diffusion generator needs at least "
                               "32 (params.min_images)")
    with pytest.raises(SynthlearnError) as info:
        generator.fit(sites[1].data, class_conditions(sites[1].data.labels), 2, 0, progress=False)
    assert str(info.value) == ("12 images; the diffusion generator needs at least 32 "
                               "(params.min_images)")


def test_fit_rejects_bad_conditions() -> None:
    data = two_tone(16)
    with pytest.raises(SynthlearnError, match="labels must be in 0..1"):
        DiffusionGenerator(TINY).fit(data, class_conditions(data.labels + 1), 2, 0, progress=False)
    with pytest.raises(SynthlearnError, match="8 conditions for 16 images"):
        DiffusionGenerator(TINY).fit(data, class_conditions(data.labels[:8]), 2, 0, progress=False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"steps": 0}, "'steps' must be an integer >= 1"),
        ({"width": 12}, "'width' must be a multiple of 8"),
        ({"levels": 6}, "'levels' must be an integer in 2..5"),
        ({"ema": 1.0}, r"'ema' must be in \[0, 1\)"),
        ({"guidance": -1.0}, r"'guidance' must be a number in \[0, 20\]"),
        ({"sampler": "euler"}, "'sampler' must be one of dpmsolver\\+\\+, ddim"),
        ({"lr": 0.0}, "'lr' must be a positive number"),
        ({"max_epochs": 0.0}, "'max_epochs' must be a positive number"),
        ({"device": "tpu"}, "'device' must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ({"attention": "yes"}, "'attention' must be true or false"),
    ],
)
def test_config_validation(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**params)


# --- in a recipe ------------------------------------------------------------------------

RECIPE_PARAMS = {"steps": 100, "batch_size": 16, "width": 8, "levels": 2, "attention": False,
                 "sample_steps": 4, "guidance": 3.0, "lr": 2e-3, "ema": 0.9, "min_images": 8,
                 "device": "cpu"}


def test_a_synthetic_arm_with_diffusion_beats_chance(tmp_path) -> None:
    # phantom images easy enough that 240 of them teach timm's test_resnet (real images:
    # accuracy 0.95, AUC 0.99); 100 steps of a tiny UNet per site measured AUC 0.69,
    # accuracy 0.62 (40 steps: chance)
    data = {"use": "phantom", "params": {"n_train": 240, "n_test": 120, "size": 16,
                                         "scanner_shift": 0.0, "noise": 0.02}}
    recipe = small_recipe(data=data, arms=[
        {"use": "synthetic", "generator": {"use": "diffusion", "params": RECIPE_PARAMS}}])
    recipe["model"]["params"]["epochs"] = 8
    metrics = run_recipe(recipe, tmp_path=tmp_path)
    entry = metrics["arms"][0]
    assert entry["use"] == "synthetic" and entry["private"] is True
    assert len(entry["fidelity"]["sites"]) == 3
    assert entry["metrics"]["auc"] > 0.6, entry["metrics"]


def test_kr_with_a_pool_and_an_audited_synthetic_arm_take_diffusion(tmp_path) -> None:
    """Every arm with a ``generator:`` slot takes diffusion unchanged: kr (its sets taken
    from one pool drawn at the site) and a synthetic arm whose membership audit re-runs
    the arm, diffusion fits included, for the control."""
    pytest.importorskip("synthlearn_kr", reason="the synthlearn-kr plugin is not installed")
    pytest.importorskip("synthlearn_mia", reason="the synthlearn-mia plugin is not installed")
    generator = {"use": "diffusion", "params": {**RECIPE_PARAMS, "steps": 10}}
    recipe = small_recipe(arms=[
        {"name": "kr-diffusion", "use": "kr", "generator": generator,
         "params": {"share": "samples", "pool": 2}},
        {"name": "audited", "use": "synthetic", "generator": generator}],
        attacks=[{"use": "loss"}])
    metrics = run_recipe(recipe, tmp_path=tmp_path)
    kr, audited = metrics["arms"]
    assert kr["details"]["generator"] == "diffusion" and kr["details"]["pool"] == 2
    assert kr["details"]["sets"] == 2  # two epochs, both sets from the one pool
    for entry in kr["details"]["per_site"]:
        assert entry["n_pool"] == 2 * entry["n_synthetic_per_set"]
    attack = audited["attacks"]["loss"]
    assert 0.0 <= attack["auc"] <= 1.0 and 0.0 <= attack["control_auc"] <= 1.0
    assert [s["site"] for s in audited["memorisation"]["sites"]] == [0, 1, 2]


def test_arms_that_differ_only_in_sampling_params_fit_once_per_site(tmp_path) -> None:
    """``sample_steps``, ``guidance`` and ``sampler`` are sampling-only params: left out
    of the site's fit key, so a sweep over them fits each site once and only samples."""

    def arm(name: str, **sampling: object) -> dict:
        return {"name": name, "use": "synthetic", "params": {"share": "samples"},
                "generator": {"use": "diffusion",
                              "params": {**RECIPE_PARAMS, "steps": 10, **sampling}}}

    metrics = run_recipe(small_recipe(arms=[
        arm("four-steps"), arm("two-steps", sample_steps=2),
        arm("ddim-unguided", sampler="ddim", guidance=1.0)]), tmp_path=tmp_path)
    fits = [p for p in tmp_path.rglob("*.safetensors")
            if Payload.from_bytes(p.read_bytes(), str(p)).meta.get("generator") == "diffusion"]
    assert len(fits) == 3  # one per site, for all three arms
    fidelity = [a["fidelity"]["pooled"]["fd"] for a in metrics["arms"]]
    assert len(set(fidelity)) == 3  # and each arm drew its own images
