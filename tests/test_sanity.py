"""Setups that would make a figure meaningless are refused, doubtful ones flagged, and
divergence is caught where it happens (``synthlearn.execution.sanity`` and the checks it drives)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import small_recipe, write_distribution
from PIL import Image
from synthlearn import notices
from synthlearn.cli import main
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import RecipeError
from synthlearn.execution.sanity import (
    check_classes,
    collapse_reason,
    rare_classes,
    warn_memorising_generators,
    warn_single_class_sites,
)
from synthlearn.report.markdown import render_report
from synthlearn.sitework.sites import Site

TINY_MODEL = {"use": "timm", "params": {"arch": "resnet10t", "epochs": 1, "batch_size": 32,
                                         "device": "cpu"}}

WIDE_MODEL = """
import attrs
import torch.nn as nn
from synthlearn import ComponentSpec, hookimpl
from synthlearn.models.training import TrainSettings

@attrs.define(frozen=True)
class Cfg:
    outputs: int = 5

class WideHead:
    def __init__(self, config):
        self.config = config
        self.training = TrainSettings(epochs=1, device="cpu")

    def build(self, in_chans, num_classes, image_size):
        side = in_chans * image_size[0] * image_size[1]
        return nn.Sequential(nn.Flatten(), nn.Linear(side, self.config.outputs))

    def describe(self):
        return {"arch": "wide_head"}

@hookimpl
def synthlearn_register_models():
    return [ComponentSpec("wide_head", Cfg, WideHead, "a fixed number of outputs")]
"""

FLAT_GENERATOR = """
import attrs
import numpy as np
import torch
from synthlearn import ComponentSpec, hookimpl
from synthlearn.sitework.exchange import Payload

@attrs.define(frozen=True)
class Cfg:
    level: int = 128

class Flat:
    def __init__(self, config):
        self.config = config
        self.shape = None

    def check(self, dataset, sites):
        pass

    def fit(self, data, conditions, num_classes, seed, *, progress=True, desc=""):
        self.shape = [int(s) for s in data.images.shape[1:]]

    def sample(self, conditions, seed):
        return np.full((len(conditions), *self.shape), self.config.level, dtype=np.uint8)

    def state(self):
        return Payload({"shape": torch.tensor(self.shape)}, {"generator": "flat"})

    def load(self, payload, source):
        self.shape = payload.tensors["shape"].tolist()

@hookimpl
def synthlearn_register_generators():
    return [ComponentSpec("flat", Cfg, Flat, "a collapsed generator: flat grey images")]
"""


def write_folder(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """An imagefolder dataset ``root/<split>/<class>/*.png`` with ``counts[split][class]``
    random 16x16 grey images (a class folder with 0 images is created empty)."""
    rng = np.random.default_rng(0)
    for split, classes in counts.items():
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


def folder_recipe(root: Path, **changes: object) -> dict:
    return small_recipe(data={"use": "imagefolder", "params": {"root": str(root), "size": 16}},
                        sites={"count": 2, "partition": {"use": "iid"}}, model=TINY_MODEL,
                        arms=[{"use": "centralized"}], **changes)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- models


def test_model_with_the_wrong_number_of_outputs_is_refused_at_validate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_recipe,
        capsys: pytest.CaptureFixture[str]) -> None:
    site = write_distribution(tmp_path / "site", "acme-wide", "acme_wide_model", WIDE_MODEL)
    monkeypatch.syspath_prepend(str(site))
    recipe = small_recipe(model={"use": "wide_head"}, arms=[{"use": "centralized"}])
    code, err = cli(capsys, "validate", str(write_recipe(recipe)))
    assert code == 2
    assert err.splitlines() == [
        "error: $.model: model 'wide_head' (distribution acme-wide) gives outputs of shape "
        "(2, 5); the dataset has 2 classes, so it must give (2, 2) floats"]
    # an arm's own model is checked too; a model with the right outputs passes
    recipe = small_recipe(model={"use": "wide_head", "params": {"outputs": 2}},
                          arms=[{"use": "centralized"},
                                {"use": "local", "model": {"use": "wide_head"}}])
    code, err = cli(capsys, "validate", str(write_recipe(recipe)))
    assert code == 2
    assert err.splitlines() == [
        "error: $.arms[1].model: model 'wide_head' (distribution acme-wide) gives outputs "
        "of shape (2, 5); the dataset has 2 classes, so it must give (2, 2) floats"]
    recipe["arms"][1]["model"]["params"] = {"outputs": 2}
    assert cli(capsys, "validate", str(write_recipe(recipe)))[0] == 0


def test_model_that_fails_on_the_dataset_shape_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_recipe,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A network that cannot take this image size fails at validate, not mid-run."""
    source = WIDE_MODEL.replace("side = in_chans", "side = 7 + in_chans")
    site = write_distribution(tmp_path / "site", "acme-bad", "acme_bad_model", source)
    monkeypatch.syspath_prepend(str(site))
    recipe = small_recipe(model={"use": "wide_head", "params": {"outputs": 2}},
                          arms=[{"use": "centralized"}])
    code, err = cli(capsys, "validate", str(write_recipe(recipe)))
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: $.model: model 'wide_head' (distribution acme-bad) "
                               "fails on a batch of this dataset's images (2, 1, 16, 16): "
                               "RuntimeError: ")


# --------------------------------------------------------------------------- classes


def test_single_class_training_set_is_refused(tmp_path: Path, write_recipe,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "one", {".": {"only": 30}})
    code, err = cli(capsys, "validate", str(write_recipe(folder_recipe(root))))
    assert code == 2
    assert err.splitlines() == [
        "error: $.data: the training split holds a single class (class 'only' (index 0): "
        "24 images): a classifier needs at least two, and its accuracy and AUC would mean "
        "nothing"]


def test_test_class_never_seen_in_training_is_refused(
        tmp_path: Path, write_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "unseen", {"train": {"a": 20, "b": 20, "c": 0},
                                              "test": {"a": 5, "b": 5, "c": 3}})
    code, err = cli(capsys, "run", str(write_recipe(folder_recipe(root))), "--quiet")
    assert code == 2
    assert err.splitlines() == [
        "error: $.data: class 'c' (index 2) has 3 test images but no training image: no arm "
        "can learn it, so every arm would score 0 on it"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_empty_split_and_out_of_range_labels_are_one_line() -> None:
    data = PhantomDataset(PhantomConfig(n_train=40, n_test=10, size=16)).load(0)
    stray = ImageData(data.test.images, np.where(data.test.labels == 1, 7, 0))
    with pytest.raises(RecipeError) as caught:
        check_classes(Dataset("x", data.train, stray, ("round", "ring")))
    assert caught.value.problems == ["$.data: the test split has labels outside the 2 "
                                     "classes the dataset declares (0..1)"]
    with pytest.raises(RecipeError) as caught:
        check_classes(Dataset("x", data.train, data.test.subset(np.arange(0)),
                              ("round", "ring")))
    assert caught.value.problems == ["$.data: the test split holds no image"]


def test_rare_class_threshold() -> None:
    assert rare_classes([100, 100, 5]) == []
    assert rare_classes([100, 100, 4]) == [2]
    assert rare_classes([10000, 10000, 60]) == [2]  # under 1% of the mean class (6687)
    assert rare_classes([10000, 10000, 70]) == []
    assert rare_classes([50, 0, 50]) == []  # an empty class is not rare, it is absent


def test_stray_label_and_class_without_test_images_are_warned(
        tmp_path: Path, write_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "stray", {"train": {"a": 30, "b": 30, "c": 1},
                                             "test": {"a": 8, "b": 8, "c": 0}})
    out = tmp_path / "run"
    code, err = cli(capsys, "run", str(write_recipe(folder_recipe(root))), "--out", str(out),
                    "--quiet")
    assert code == 0, err
    rare = ("$.data: class 'c' (index 2) has only 1 training image (the mean class has 20): "
            "a stray label? its figures rest on almost nothing")
    no_test = "$.data: class 'c' (index 2) has no test image: the test figures do not score it"
    assert f"warning: {rare}" in err.splitlines()
    assert f"warning: {no_test}" in err.splitlines()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["warnings"][:2] == [rare, no_test]
    report = (out / "report.md").read_text()
    assert "## Warnings" in report and f"- {rare}" in report
    assert report.index("## Warnings") < report.index("## What was compared")


def test_single_class_site_of_a_per_site_arm_is_warned(
        tmp_path: Path, write_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = small_recipe(data={"use": "phantom", "params": {"n_train": 60, "n_test": 30,
                                                             "size": 16}},
                          sites={"count": 2, "partition": {"use": "dirichlet",
                                                           "params": {"alpha": 0.01}}},
                          model=TINY_MODEL, arms=[{"use": "local"}])
    out = tmp_path / "run"
    code, err = cli(capsys, "run", str(write_recipe(recipe)), "--out", str(out), "--quiet")
    assert code == 0, err
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    tail = ("the model it trained can only predict that class, and the arm's mean over "
            "sites counts it")
    assert warnings == [  # alpha 0.01 gave each site one class
        f"arm local, site 0: the site's 30 training images are all of class 'ring' "
        f"(index 1): {tail}",
        f"arm local, site 1: the site's 30 training images are all of class 'round' "
        f"(index 0): {tail}"]
    assert f"warning: {warnings[1]}" in err.splitlines()
    assert f"- {warnings[0]}" in (out / "report.md").read_text()


def test_warn_single_class_sites_only_for_one_class_sites(
        capsys: pytest.CaptureFixture[str]) -> None:
    data = PhantomDataset(PhantomConfig(n_train=40, n_test=10, size=16)).load(0).train
    sites = [Site(0, data), Site(1, data.subset(np.flatnonzero(data.labels == 1)))]
    notices.start()
    warn_single_class_sites("local", [0, 1], sites, ["round", "ring"])
    assert notices.collected() == [
        f"arm local, site 1: the site's {int((data.labels == 1).sum())} training images are "
        "all of class 'ring' (index 1): the model it trained can only predict that class, "
        "and the arm's mean over sites counts it"]
    notices.start()


# --------------------------------------------------------------------------- divergence


def diverging(arm: dict) -> dict:
    model = {"use": "timm", "params": {**TINY_MODEL["params"], "epochs": 2, "lr": 1e12,
                                       "batch_size": 8}}  # several steps in epoch 1
    return small_recipe(data={"use": "phantom", "params": {"n_train": 60, "n_test": 20,
                                                           "size": 16}},
                        sites={"count": 2}, model=model, arms=[arm])


def test_divergence_at_the_server_names_arm_and_epoch(
        write_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(capsys, "run", str(write_recipe(diverging({"use": "centralized"}))),
                    "--quiet")
    assert code == 2
    assert err.splitlines() == [
        "error: arm centralized, server (pooled real images): training diverged at epoch 1 "
        "of 2 (loss nan, lr 1e+12): try a lower learning rate"]


def test_divergence_at_a_site_names_arm_site_and_epoch(
        write_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(capsys, "run", str(write_recipe(diverging({"use": "local"}))), "--quiet")
    assert code == 2
    assert err.splitlines() == [
        "error: arm local, site 0, task train_local: training diverged at epoch 1 of 2 "
        "(loss nan, lr 1e+12): try a lower learning rate"]


def test_gan_divergence_names_arm_site_and_step(
        write_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    gan = {"use": "gan", "params": {"steps": 20, "batch_size": 16, "width": 8,
                                    "latent_dim": 8, "min_images": 16, "device": "cpu",
                                    "lr_g": 1e30, "lr_d": 1e30}}
    recipe = diverging({"use": "synthetic", "generator": gan,
                        "conditioning": {"use": "categorical"}})
    recipe["model"] = TINY_MODEL
    code, err = cli(capsys, "run", str(write_recipe(recipe)), "--quiet")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: arm synthetic, site 0, task synthesize: gan training "
                               "diverged by step 1 of 20 (discriminator loss ")
    assert lines[0].endswith("generator loss nan): try a lower lr_d / lr_g")


# --------------------------------------------------------------------------- generators


def test_collapse_reason_tells_collapsed_images_from_real_ones() -> None:
    real = PhantomDataset(PhantomConfig(n_train=40, n_test=10, size=16)).load(0).train.images
    assert collapse_reason(real, {"precision": 0.4, "recall": 0.3}) is None
    flat = np.full_like(real, 90)
    assert collapse_reason(flat, None) == ("the images are constant (pixel std 0.00 grey "
                                           "levels within an image)")
    same = np.repeat(real[:1], len(real), axis=0)
    assert collapse_reason(same, None) == ("the images are all alike (pixel std 0.00 grey "
                                           "levels across images)")
    assert collapse_reason(real, {"precision": 0.0, "recall": 0.0}) == (
        "fidelity precision and recall are both 0 against the real test images")


def test_collapsed_generator_is_warned_naming_arm_and_site(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_recipe,
        capsys: pytest.CaptureFixture[str]) -> None:
    site = write_distribution(tmp_path / "site", "acme-flat", "acme_flat_generator",
                              FLAT_GENERATOR)
    monkeypatch.syspath_prepend(str(site))
    recipe = small_recipe(data={"use": "phantom", "params": {"n_train": 60, "n_test": 20,
                                                             "size": 16}},
                          sites={"count": 2}, model=TINY_MODEL,
                          arms=[{"name": "flat", "use": "synthetic",
                                 "generator": {"use": "flat"},
                                 "conditioning": {"use": "categorical"}}])
    out = tmp_path / "run"
    code, err = cli(capsys, "run", str(write_recipe(recipe)), "--out", str(out), "--quiet")
    assert code == 0, err
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    collapsed = [w for w in warnings if "the generator looks collapsed" in w]
    assert [w.split(":")[0] for w in collapsed] == ["arm flat, site 0", "arm flat, site 1"]
    assert "the images are constant (pixel std 0.00 grey levels" in collapsed[0]
    assert f"warning: {collapsed[0]}" in err.splitlines()
    assert f"- {collapsed[1]}" in (out / "report.md").read_text()


# --------------------------------------------------------------------------- report


def test_report_has_a_warnings_section_only_when_there_are_warnings() -> None:
    metrics = {"name": "r", "seed": 0, "arms": []}
    assert "## Warnings" not in render_report(metrics)
    assert "## Warnings" not in render_report({**metrics, "warnings": []})
    text = render_report({**metrics, "warnings": ["arm x, site 1: something odd"]})
    assert "## Warnings" in text and "- arm x, site 1: something odd" in text
    assert text.index("## Warnings") < text.index("## What was compared")


def test_a_generator_that_memorised_its_site_is_flagged_and_one_at_chance_is_not() -> None:
    """The near-copy share is compared with what copying nothing gives (the quantile):
    the small-site diffusion fits of docs/results.md (32 % near copies) are flagged, the
    catphishing ones (about 1 %) are not."""
    def site(sid: int, share: float, closer: float) -> dict:
        return {"site": sid, "quantile": 0.01,
                "pixel": {"near_copies": share, "closer_to_members": closer}}

    notices.start()
    warn_memorising_generators("synthetic-diffusion", {"sites": [
        site(0, 0.32, 0.85), site(1, 0.0148, 0.58), site(2, 0.049, 0.6)]})
    assert notices.collected() == [
        "arm synthetic-diffusion, site 0: 32.0% of the synthetic images are near copies of "
        "the site's own images (a generator that copied nothing: about 1%) and 85% lie "
        "nearer a member than a non-member: the generator memorised the site's images "
        "(for a small site: fewer fitting steps, or the synthetic arm's filter: "
        "{use: near-copy}, which removes pixel near copies; reid matches identities and "
        "leaves most of them)"]
