"""The kr arm (knowledge recycling) end to end: what crosses in each way of sharing,
that the teachers' soft labels really steer the student, the target maths, and the
errors a user can cause."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from synthlearn import ComponentSpec, hookimpl
from synthlearn.api import Payload
from synthlearn.testing import RunResult, check_arm, run_recipe, small_recipe

pytest.importorskip("synthlearn_kr", reason="the synthlearn-kr plugin is not installed")
pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")

from synthlearn_kr.config import KRConfig  # noqa: E402
from synthlearn_kr.targets import (  # noqa: E402
    agreement,
    softened,
    student_targets,
    teacher_probabilities,
)

TINY_GAN = {"use": "gan", "params": {"steps": 20, "batch_size": 32, "width": 8,
                                      "latent_dim": 16, "min_images": 16, "device": "cpu"}}

@attrs.define(frozen=True)
class SwapperConfig:
    shift: int = 0


class Swapper:
    """A generator for tests: it "samples" a site's own training images, of the class
    ``shift`` places after the one asked for (shift 1 on two classes: always the wrong
    class), so the conditioning labels lie and only the teachers can tell the truth."""

    def __init__(self, config: SwapperConfig) -> None:
        self.config = config

    def fit(self, data, conditions, num_classes, seed, *, progress=True, desc=""):
        self.images, self.labels = data.images.copy(), conditions.labels.copy()
        self.k = num_classes

    def sample(self, conditions, seed):
        rng = np.random.default_rng(seed)
        picks = [rng.choice(np.flatnonzero(self.labels == (c + self.config.shift) % self.k))
                 for c in conditions.labels]
        return self.images[picks]

    def state(self):
        return Payload({"images": torch.from_numpy(self.images),
                        "labels": torch.from_numpy(self.labels)}, {"k": self.k})

    def load(self, payload, source):
        self.images = payload.tensors["images"].numpy()
        self.labels = payload.tensors["labels"].numpy()
        self.k = payload.meta["k"]


class SwapperPlugin:
    """Registers ``swapper``, in this process (``run_recipe(plugins=[...])``)."""

    @hookimpl
    def synthlearn_register_generators(self) -> list[ComponentSpec]:
        return [ComponentSpec("swapper", SwapperConfig, Swapper,
                              "hands back real images of another class")]


def kr_arm(name: str, **params: object) -> dict:
    return {"name": name, "use": "kr", "params": params, "generator": TINY_GAN,
            "conditioning": {"use": "categorical"}}


def _arms(metrics: RunResult) -> dict[str, dict]:
    return {a["name"]: a for a in metrics["arms"]}


@pytest.fixture(scope="module")
def kr_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One run: the same kr arm shared as models and as samples, each with site and
    ensemble teachers (3 sets: 3 epochs, a fresh set every epoch)."""
    tmp = tmp_path_factory.mktemp("kr")
    recipe = small_recipe(arms=[
        kr_arm("models-site", share="models", multiple=1.5),
        kr_arm("samples-site", share="samples", multiple=1.5),
        kr_arm("models-ensemble", share="models", labels="ensemble", multiple=1.5),
        kr_arm("samples-ensemble", share="samples", labels="ensemble", multiple=1.5),
        kr_arm("fixed-set", regenerate_every=None, multiple=1.5),
        kr_arm("models-site-draw", share="models", multiple=1.5, class_balance="site"),
        kr_arm("models-equal", share="models", multiple=1.5, class_balance="equal"),
        kr_arm("samples-equal", share="samples", multiple=1.5, class_balance="equal"),
        kr_arm("pooled-models", share="models", multiple=1.5, pool=2),
        kr_arm("pooled-samples", share="samples", multiple=1.5, pool=2),
        {**kr_arm("calibrated", share="models", multiple=1.5), "model": {
            "use": "timm", "params": {**small_recipe()["model"]["params"],
                                      "arch": "test_resnet", "epochs": 3,
                                      "calibrate": True}}},
    ])
    recipe["model"]["params"].update(arch="test_resnet", epochs=3)
    return run_recipe(recipe, tmp_path=tmp)


def test_models_and_samples_train_the_same_student(kr_run: RunResult) -> None:
    arms = _arms(kr_run)
    for labels in ("site", "ensemble"):
        models, samples = arms[f"models-{labels}"], arms[f"samples-{labels}"]
        for key in ("accuracy", "balanced_accuracy", "auc"):
            assert models["metrics"][key] == samples["metrics"][key]
        assert models["details"]["teacher_agreement"] == samples["details"]["teacher_agreement"]
    # site and ensemble teachers give different targets, hence a different student
    assert arms["models-site"]["metrics"]["auc"] != arms["models-ensemble"]["metrics"]["auc"]


def test_what_leaves_each_site_is_counted_and_named(kr_run: RunResult) -> None:
    arms = _arms(kr_run)
    metrics = kr_run
    n_real = [s["n"] for s in metrics["sites"]]
    models, samples = arms["models-site"], arms["samples-site"]
    assert "teacher classifier weights" in models["shared"][0]
    assert "generator and teacher stay at the site" in samples["shared"][0]
    assert [s["left_the_site"] for s in models["details"]["per_site"]] == [
        ["generator", "teacher"]] * 3
    # 3 sets of 1.5 x n images (uint8, 1 x 16 x 16) with int64 labels and 2 float logits
    per_image = 16 * 16 + 8 + 2 * 4
    expected = sum(3 * round(1.5 * n) * per_image for n in n_real)
    assert expected < samples["metrics"]["bytes_to_server"] < expected + 3 * 4096
    assert samples["metrics"]["bytes_to_sites"] == 0
    # ensemble labelling with samples: every set goes to the two other sites
    ens = arms["samples-ensemble"]["metrics"]
    images_out = sum(2 * 3 * round(1.5 * n) * 16 * 16 for n in n_real)
    assert images_out < ens["bytes_to_sites"] < images_out + 3 * 4096
    assert ens["bytes_to_server"] > samples["metrics"]["bytes_to_server"]
    for entry in models["details"]["per_site"]:
        assert 0.0 <= entry["teacher_accuracy"] <= 1.0
        assert entry["n_synthetic_per_set"] == round(1.5 * entry["n_real"])
    assert "teacher_accuracy" not in samples["details"]["per_site"][0]


def test_calibrate_shifts_the_students_biases_at_the_sites(kr_run: RunResult) -> None:
    arms = _arms(kr_run)
    calibrated, plain = arms["calibrated"], arms["models-site"]
    trained, after = calibrated["details"]["steps"]
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert trained[key] == plain["metrics"][key]  # the same student before ...
        assert after[key] == calibrated["metrics"][key]  # ... and the arm's figures after
    biases = calibrated["details"]["calibration_biases"]
    assert len(biases) == 2 and abs(sum(biases)) < 1e-6 and max(map(abs, biases)) > 1e-3
    assert plain["metrics"]["bytes_to_sites"] == 0
    assert calibrated["metrics"]["bytes_to_sites"] > 0  # the student went to the sites
    assert any("logit biases" in what for what in calibrated["shared"])


def test_sets_follow_regenerate_every(kr_run: RunResult) -> None:
    arms = _arms(kr_run)
    assert arms["models-site"]["details"]["sets"] == 3
    assert arms["fixed-set"]["details"]["sets"] == 1
    details = arms["models-site"]["details"]
    assert details["images_seen"] == 3 * details["n_train"]
    # the fixed set is the first of the regenerated ones: same start, different training
    assert arms["fixed-set"]["metrics"]["auc"] != arms["models-site"]["metrics"]["auc"]
    assert (kr_run.run_dir / "synthetic-models-site.png").exists()


def test_equal_class_balance_draws_every_class_alike_in_both_share_modes(
        kr_run: RunResult) -> None:
    arms = _arms(kr_run)
    for entry in arms["models-equal"]["details"]["per_site"]:
        counts = entry["class_counts_synthetic"]
        assert max(counts) - min(counts) <= 1
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert arms["models-equal"]["metrics"][key] == arms["samples-equal"]["metrics"][key]
        # the small recipe's sites hold both classes alike: equal draws what site draws
        assert arms["models-equal"]["metrics"][key] == arms["models-site"]["metrics"][key]
        # class_balance: site is the default: the same numbers as the arm without it
        assert arms["models-site-draw"]["metrics"][key] == arms["models-site"]["metrics"][key]
    assert arms["models-equal"]["details"]["class_balance"] == "equal"


def test_a_pool_is_drawn_and_labelled_once_and_every_set_is_a_subset_of_it(
        kr_run: RunResult) -> None:
    arms = _arms(kr_run)
    models, samples = arms["pooled-models"], arms["pooled-samples"]
    for key in ("accuracy", "balanced_accuracy", "auc"):  # the same sets either way
        assert models["metrics"][key] == samples["metrics"][key]
    # three sets (3 epochs) from one pool of two sets' worth: not the unpooled arm's sets
    assert models["details"]["sets"] == 3 and models["details"]["pool"] == 2
    assert models["metrics"]["auc"] != arms["models-site"]["metrics"]["auc"]
    for entry in samples["details"]["per_site"]:
        assert entry["n_pool"] == 2 * entry["n_synthetic_per_set"]
    # the pool crossed once: two sets' worth of images instead of the three sets
    ratio = samples["metrics"]["bytes_to_server"] / arms["samples-site"]["metrics"][
        "bytes_to_server"]
    assert 0.6 < ratio < 0.72


def test_config_counts_sets() -> None:
    assert KRConfig(regenerate_every=2).sets_for(5) == 3
    assert KRConfig(regenerate_every=None).sets_for(5) == 1
    assert [KRConfig(regenerate_every=2).set_for_epoch(e) for e in range(5)] == [
        0, None, 1, None, 2]
    assert KRConfig(multiple=2.5).images_for(10) == 25
    pooled = KRConfig(multiple=2.0, pool=3)
    assert (pooled.sets_for(4), pooled.draws_for(4), pooled.drawn_for(10)) == (4, 1, 60)
    with pytest.raises(ValueError, match="regenerate_every"):
        KRConfig(pool=3, regenerate_every=None)


def test_targets_mix_teacher_and_label() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 4.0]])
    soft = softened(logits, 2.0)
    assert np.allclose(soft[0], np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum())
    assert np.allclose(softened(logits * 1000, 1.0)[1], [0.0, 1.0])  # stable
    labels = np.array([1, 1])
    mixed = student_targets(labels, soft, alpha=0.25, label_smoothing=0.2)
    assert np.allclose(mixed.sum(axis=1), 1.0)
    hard = np.array([[0.1, 0.9], [0.1, 0.9]])
    assert np.allclose(mixed, 0.25 * soft + 0.75 * hard)
    assert np.allclose(student_targets(labels, soft, 1.0, 0.0), soft)
    ens = teacher_probabilities([logits, -logits], 1.0)
    assert np.allclose(ens, 0.5)
    assert agreement(labels, soft) == 0.5


def _swapper_run(tmp: Path) -> dict[str, dict]:
    swapper = {"use": "swapper", "params": {"shift": 1}}
    arm = {"use": "kr", "generator": swapper, "conditioning": {"use": "categorical"}}
    # 8x8 digits over 2 sites, 2 epochs: teachers reach about 0.9 (0.93 and 0.91 when
    # measured), far above the 0.7 asked of the students they teach
    model = {"arch": "test_resnet", "epochs": 2, "batch_size": 32, "lr": 0.005,
             "device": "cpu"}
    recipe = small_recipe(
        data={"use": "digits", "params": {"size": 8}},
        sites={"count": 2, "partition": {"use": "iid"}},
        model={"use": "timm", "params": model},
        arms=[
            {**arm, "name": "labels-only", "params": {"alpha": 0.0}},
            {**arm, "name": "teachers-only", "params": {"alpha": 1.0, "temperature": 1.0}},
            {**arm, "name": "teachers-mixup", "params": {"alpha": 1.0},
             "model": {"use": "timm", "params": {**model, "mixup": 0.4}}},
        ])
    return _arms(run_recipe(recipe, plugins=[SwapperPlugin()], tmp_path=tmp))


def test_teacher_soft_labels_correct_lying_conditioning_labels(tmp_path: Path) -> None:
    arms = _swapper_run(tmp_path)
    # every synthetic image shows the next digit: trained on its conditioning label, the
    # student learns every class off by one (chance is 0.1); the teachers (trained on
    # real images) label what the images show, and the student learns the task
    print({name: (arm["metrics"]["accuracy"], arm["details"]["per_site"][0]["teacher_accuracy"])
           for name, arm in arms.items()})
    assert arms["labels-only"]["metrics"]["accuracy"] < 0.05
    assert arms["teachers-only"]["metrics"]["accuracy"] > 0.7
    assert arms["teachers-mixup"]["metrics"]["accuracy"] > 0.7
    assert arms["teachers-only"]["details"]["teacher_agreement"] < 0.1


@pytest.mark.parametrize(("params", "message"), [
    ({"alpha": 1.5}, "'alpha' must be in [0.0, 1.0]"),
    ({"temperature": 0}, "'temperature' must be in (0.0, inf]"),
    ({"regenerate_every": 0}, "'regenerate_every' must be an integer >= 1 or null"),
    ({"share": "teachers"}, "'share' must be in ('models', 'samples') (got 'teachers')"),
    ({"labels": "everyone"}, "'labels' must be in ('site', 'ensemble')"),
])
def test_bad_params_are_one_line_errors(params: dict, message: str, write_recipe,
                                        tmp_path: Path, cli) -> None:
    recipe = small_recipe(arms=[kr_arm("kr", **params)])
    result = cli("run", str(write_recipe(recipe)), "--quiet")
    assert result.returncode != 0
    assert message in result.stderr and "$.arms[0]" in result.stderr
    assert "Traceback" not in result.stderr and "Attribute(" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True


def test_a_teacher_model_of_its_own(write_recipe, tmp_path: Path, cli) -> None:
    arm = kr_arm("kr", multiple=0.5)
    arm["teacher"] = {"use": "timm", "params": {"arch": "no_such_net"}}
    result = cli("run", str(write_recipe(small_recipe(arms=[arm]))), "--quiet")
    assert result.returncode != 0
    assert "$.arms[0].teacher" in result.stderr and "Traceback" not in result.stderr


def test_kr_conforms_to_the_arm_contract() -> None:
    check_arm(kr_arm("kr", multiple=0.5, regenerate_every=None))


def test_a_filter_screens_the_sets_before_they_leave_and_needs_samples(
        tmp_path: Path, write_recipe, cli) -> None:
    arm = kr_arm("kr", share="samples", regenerate_every=1, multiple=0.5)
    arm["filter"] = {"use": "near-copy", "params": {"quantile": 0.05}}
    result = run_recipe(small_recipe(arms=[arm]), tmp_path=tmp_path)
    details = result["arms"][0]["details"]
    for site in details["per_site"]:
        screening = site["screening"]
        assert screening["filter"] == "near-copy"
        # every set of the student's epochs was screened
        assert screening["drawn"] >= details["sets"] * site["n_synthetic_per_set"]
        assert screening["about"]["quantile"] == 0.05
    refused = dict(arm, params={**arm["params"], "share": "models"})
    out = cli("validate", str(write_recipe(small_recipe(arms=[refused]))))
    assert out.returncode == 2 and "$.arms[0]: a filter needs share: samples" in out.stderr
