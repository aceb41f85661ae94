"""Tests of the example generator ``class_gaussian`` with synthlearn's test kit.

The pattern for a generator of your own: ``check_generator`` (the whole ``Generator``
contract on tiny data: determinism, the state/load round trip, corrupted payloads),
then a synthetic arm that uses it in a whole recipe run, with its figures asserted,
then what a hostile site could send. Keep the settings small: these run in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthlearn import RecipeError, SynthlearnError
from synthlearn.api import Conditions, Dataset, Payload
from synthlearn.testing import check_generator, run_recipe, small_recipe
from synthlearn_example import plugin
from synthlearn_example.generator import ClassGaussianConfig, ClassGaussianGenerator

SOURCE = "arm 'synthetic' site 1"


def test_class_gaussian_conforms_to_the_generator_contract() -> None:
    check_generator(ClassGaussianGenerator(ClassGaussianConfig()))
    check_generator(ClassGaussianGenerator(ClassGaussianConfig(components=0)))


def test_a_synthetic_arm_learns_from_it(tmp_path: Path) -> None:
    # phantom images easy enough that 240 of them teach a small CNN (real images: 0.78)
    data = {"use": "phantom", "params": {"n_train": 240, "n_test": 120, "size": 16,
                                         "scanner_shift": 0.0, "noise": 0.02}}
    model = {"use": "tiny_cnn", "params": {"width": 8, "epochs": 15, "lr": 0.005,
                                           "device": "cpu"}}
    arm = {"use": "synthetic", "params": {"share": "generator"},
           "generator": {"use": "class_gaussian", "params": {"components": 8, "spread": 0.7}}}
    metrics = run_recipe(small_recipe(data=data, model=model, arms=[arm]), plugins=[plugin],
                         tmp_path=tmp_path)
    result = metrics["arms"][0]
    assert result["metrics"]["accuracy"] > 0.65      # 2 classes: chance is 0.5
    assert result["metrics"]["auc"] > 0.7
    # what crossed: per site, 2 classes x (8 components + mean + noise) x 256 pixels
    # as float32, plus the safetensors header and the site's class counts
    weights = 3 * 2 * (8 + 2) * 16 * 16 * 4
    assert weights < result["metrics"]["bytes_to_server"] < weights + 3 * 2048
    assert [s["n_fake"] for s in result["fidelity"]["sites"]] == [80, 80, 80]
    assert (metrics.run_dir / "report.md").is_file()


def _fitted(dataset: Dataset) -> ClassGaussianGenerator:
    train = dataset.train
    generator = ClassGaussianGenerator(ClassGaussianConfig(components=4))
    conditions = Conditions(train.labels, np.zeros((len(train), 0), dtype=np.float32))
    generator.fit(train, conditions, dataset.num_classes, seed=0, progress=False)
    return generator


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.meta.update(num_classes=10**9),
     r"'num_classes' must be an integer in 1\.\.1000"),
    (lambda p: p.meta.update(num_classes=3),
     r"tensor 'mean' is torch.float32 \(2, 256\), expected torch.float32 \(3, 256\)"),
    (lambda p: p.meta.update(image_shape=[1, 65536, 65536]), r"'image_shape' .* larger"),
    (lambda p: p.tensors.update(basis=p.tensors["basis"].double()), r"tensor 'basis' is"),
    (lambda p: p.tensors["noise"].fill_(-1.0), r"negative spreads"),
    (lambda p: p.tensors.pop("mean"), r"no tensor 'mean'"),
], ids=["huge-class-count", "count-unlike-tensors", "huge-image", "wrong-dtype",
        "negative-noise", "tensor-missing"])
def test_a_corrupted_payload_is_one_line_naming_its_source(tiny_dataset: Dataset, change,
                                                           message: str) -> None:
    sent = _fitted(tiny_dataset).state()
    payload = Payload.from_bytes(sent.to_bytes(), SOURCE)   # as the server receives it
    change(payload)
    with pytest.raises(SynthlearnError, match=message) as caught:
        ClassGaussianGenerator(ClassGaussianConfig(components=4)).load(payload, SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")
    assert "\n" not in str(caught.value)


def test_bad_params_are_refused_with_their_yaml_path(tmp_path: Path) -> None:
    arm = {"use": "synthetic", "generator": {"use": "class_gaussian",
                                             "params": {"components": -1}}}
    with pytest.raises(RecipeError, match=r"\$\.arms\[0\]\.generator\.params"):
        run_recipe(small_recipe(arms=[arm]), plugins=[plugin], tmp_path=tmp_path)
