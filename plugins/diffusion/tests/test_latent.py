"""``latent: true`` of the ``diffusion`` generator: each site fits a small
``AutoencoderKL`` and the UNet runs in its latent space; the decoder travels with the
generator. Tiny networks and a few steps: seconds on one CPU thread."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch

pytest.importorskip("synthlearn_diffusion")
pytest.importorskip("diffusers")

from synthlearn import SynthlearnError  # noqa: E402
from synthlearn.api import ImageData, Payload  # noqa: E402
from synthlearn.testing import (  # noqa: E402
    check_generator,
    class_conditions,
    run_recipe,
    small_recipe,
    two_tone,
)
from synthlearn_diffusion import DiffusionConfig, DiffusionGenerator  # noqa: E402
from synthlearn_diffusion.networks import ae_config  # noqa: E402

#: Tiny latent config: a 2-level autoencoder of 8 and 16 channels (16 px -> 8 px latents
#: of 2 channels) under a 2-level UNet of 8 and 16 channels.
TINY = DiffusionConfig(steps=4, batch_size=16, width=8, levels=2, attention=False,
                       sample_steps=3, min_images=8, device="cpu", latent=True,
                       latent_channels=2, ae_width=8, ae_levels=2, ae_steps=4)






def fitted(config: DiffusionConfig = TINY, data: ImageData | None = None, seed: int = 0
           ) -> DiffusionGenerator:
    data = two_tone() if data is None else data
    generator = DiffusionGenerator(config)
    generator.fit(data, class_conditions(data.labels), 2, seed, progress=False)
    return generator


@pytest.fixture(scope="module")
def tiny() -> DiffusionGenerator:
    return fitted()


def test_latent_diffusion_conforms_to_the_generator_contract() -> None:
    check_generator(DiffusionGenerator(TINY))


def test_the_decoder_travels_and_the_encoder_stays(tiny: DiffusionGenerator) -> None:
    payload = tiny.state()
    ae = payload.meta["autoencoder"]
    assert {k: v for k, v in ae.items() if k != "scaling_factor"} == {
        k: v for k, v in ae_config(1, 16, 8, 2, 2).items() if k != "scaling_factor"}
    assert math.isfinite(ae["scaling_factor"]) and ae["scaling_factor"] > 0
    assert payload.meta["unet"]["in_channels"] == 2 and payload.meta["unet"]["sample_size"] == 8
    names = list(payload.tensors)
    assert any(n.startswith("autoencoder.decoder.") for n in names)
    assert not any(n.startswith("autoencoder.encoder.") for n in names)
    decoder = sum(t.numel() * t.element_size() for n, t in payload.tensors.items()
                  if n.startswith("autoencoder."))
    assert decoder > 0 and len(payload.to_bytes()) > decoder  # counted in what crosses


def test_round_trip_and_determinism(tiny: DiffusionGenerator) -> None:
    conditions = class_conditions(np.array([0, 1, 1, 0]))
    first = tiny.sample(conditions, 7)
    assert first.dtype == np.uint8 and first.shape == (4, 1, 16, 16)
    assert np.array_equal(first, tiny.sample(conditions, 7))
    assert not np.array_equal(first, tiny.sample(conditions, 8))
    server = DiffusionGenerator(DiffusionConfig(sample_steps=3, device="cpu"))  # pixel config
    server.load(Payload.from_bytes(tiny.state().to_bytes(), "site 1"), "site 1")
    assert np.array_equal(server.sample(conditions, 7), first)
    assert fitted().state().to_bytes() == tiny.state().to_bytes()


def _ae(change):
    return lambda m: {**m, "autoencoder": change(dict(m["autoencoder"]))}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_ae(lambda a: {**a, "scaling_factor": float("nan")}), "scaling_factor must be"),
        (_ae(lambda a: {**a, "scaling_factor": -1.0}), "scaling_factor must be"),
        (_ae(lambda a: {**a, "_class_name": "Exploit"}), "unexpected key '_class_name'"),
        (_ae(lambda a: {**a, "block_out_channels": [8] * 100}),
         "block_out_channels must be 2 to 4"),
        (_ae(lambda a: {**a, "use_quant_conv": True}), "use_quant_conv must be false"),
        (_ae(lambda a: {**a, "latent_channels": 4}), "does not fit 'image_shape'"),
        (_ae(lambda a: {**a, "in_channels": 3, "out_channels": 3}), "does not fit"),
        (_ae(lambda a: {**a, "layers_per_block": 2}), "weights do not fit"),
        (lambda m: {**m, "autoencoder": None}, "does not fit 'image_shape'"),
        (lambda m: {**m, "autoencoder": [1, 2]}, "'autoencoder' is not a JSON object"),
    ],
)
def test_tampered_autoencoder_meta_is_one_line(tiny: DiffusionGenerator, change,
                                               message: str) -> None:
    payload = Payload.from_bytes(tiny.state().to_bytes(), "site 3")
    bad = Payload.from_bytes(Payload(payload.tensors, change(payload.meta)).to_bytes(), "site 3")
    with pytest.raises(SynthlearnError, match=message) as info:
        DiffusionGenerator(TINY).load(bad, "site 3")
    assert info.value.where == "site 3" and "\n" not in str(info.value)


def test_tampered_decoder_tensors_are_one_line(tiny: DiffusionGenerator) -> None:
    payload = tiny.state()
    tensors = dict(payload.tensors)
    name = next(n for n in tensors if n.startswith("autoencoder.decoder.") and
                n.endswith("weight") and tensors[n].dim() == 4)
    cases = {
        f"no tensor '{name}'": {k: v for k, v in tensors.items() if k != name},
        "unexpected tensor 'autoencoder.encoder.conv_in.weight'":
            {**tensors, "autoencoder.encoder.conv_in.weight": torch.zeros(8, 1, 3, 3)},
        "NaN": {**tensors, name: torch.full_like(tensors[name], float("inf"))},
        "weights do not fit": {**tensors, name: tensors[name][:1].clone()},
    }
    for message, bad in cases.items():
        with pytest.raises(SynthlearnError, match=message) as info:
            DiffusionGenerator(TINY).load(Payload(bad, payload.meta), "site 6")
        assert info.value.where == "site 6" and "\n" not in str(info.value), message


@pytest.mark.parametrize(("channels", "side", "levels"), [(1, 28, 3), (3, 32, 2)])
def test_latent_sizes(channels: int, side: int, levels: int) -> None:
    # 28 px: latents of 14, padded to 16 for a 3-level UNet and cropped back to decode
    data = two_tone(8, side=side, channels=channels)
    config = attrs.evolve(TINY, steps=1, ae_steps=1, batch_size=4, levels=levels,
                          sample_steps=1)
    generator = fitted(config, data)
    assert generator.state().meta["unet"]["sample_size"] == (16 if side == 28 else 16)
    images = generator.sample(class_conditions(np.array([0, 1])), seed=0)
    assert images.dtype == np.uint8 and images.shape == (2, channels, side, side)


def test_site_too_small_in_latent_mode() -> None:
    data = two_tone(6)
    with pytest.raises(SynthlearnError) as info:
        DiffusionGenerator(TINY).fit(data, class_conditions(data.labels), 2, 0, progress=False)
    assert str(info.value) == ("6 images; the diffusion generator needs at least 8 "
                               "(params.min_images)")


@pytest.mark.slow
def test_latent_guidance_and_a_synthetic_arm_beat_chance(tmp_path) -> None:
    # guidance in latent space, then a synthetic arm with latent diffusion in a recipe
    data = two_tone(128)
    config = attrs.evolve(TINY, steps=150, ae_steps=150, lr=2e-3, ema=0.99, cond_drop=0.2,
                          sample_steps=8)
    generator = fitted(config, data)
    conditions = class_conditions(np.repeat([0, 1], 32))
    gap = {}
    for scale in (0.0, 3.0):
        generator.config = attrs.evolve(config, guidance=scale)
        images = generator.sample(conditions, seed=1).astype(np.float64)
        gap[scale] = images[32:].mean() - images[:32].mean()
    assert gap[3.0] > gap[0.0] + 6, gap

    params = {**{k: v for k, v in attrs.asdict(config).items()},
              "guidance": 3.0, "steps": 100, "ae_steps": 100, "sample_steps": 4}
    recipe = small_recipe(
        data={"use": "phantom", "params": {"n_train": 240, "n_test": 120, "size": 16,
                                           "scanner_shift": 0.0, "noise": 0.02}},
        arms=[{"use": "synthetic", "generator": {"use": "diffusion", "params": params}}])
    recipe["model"]["params"]["epochs"] = 8
    entry = run_recipe(recipe, tmp_path=tmp_path)["arms"][0]
    assert entry["metrics"]["auc"] > 0.6, entry["metrics"]
