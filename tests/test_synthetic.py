"""The synthetic arm end to end, with the gan plugin as its generator: what crosses, what
the server draws, the report, and the errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import small_recipe
from synthlearn.execution.run import Run
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe
from synthlearn.sitework.exchange import Payload

pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")

TINY_GAN = {"use": "gan", "params": {"steps": 20, "batch_size": 32, "width": 8,
                                      "latent_dim": 16, "min_images": 16, "device": "cpu"}}


def synthetic_arm(name: str, share: str, **params: object) -> dict:
    return {"name": name, "use": "synthetic", "params": {"share": share, **params},
            "generator": TINY_GAN, "conditioning": {"use": "phenotypic"}}


def own_model(**training: object) -> dict:
    """The small recipe's model with extra training settings (an arm's own ``model:``)."""
    model = small_recipe()["model"]
    return {"use": model["use"], "params": {**model["params"], **training}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run with the same generator shared as samples and as weights."""
    tmp = tmp_path_factory.mktemp("synthetic")
    recipe = small_recipe(arms=[
        synthetic_arm("as-samples", "samples", multiple=2.0),
        synthetic_arm("as-generator", "generator", multiple=2.0),
        synthetic_arm("fixed-count", "samples", count=25),
        synthetic_arm("redrawn-samples", "samples", multiple=2.0, regenerate_every=1),
        synthetic_arm("redrawn-generator", "generator", multiple=2.0, regenerate_every=1),
        {**synthetic_arm("adapted", "generator", multiple=2.0),
         "model": own_model(adapt_bn=True, calibrate=True)},
        {**synthetic_arm("smoothed", "samples", multiple=2.0),
         "model": own_model(label_smoothing=0.3, mixup=0.4)},
        synthetic_arm("site-draw", "samples", multiple=2.0, class_balance="site"),
        synthetic_arm("equal-draw", "generator", multiple=2.0, class_balance="equal"),
        synthetic_arm("pooled-samples", "samples", multiple=2.0, regenerate_every=1, pool=3),
        synthetic_arm("pooled-generator", "generator", multiple=2.0, regenerate_every=1,
                      pool=3),
    ])
    recipe["output"] = {"dir": str(tmp / "runs"), "cache": str(tmp / "cache")}
    plugins = load_plugins()
    out = Run(check_recipe(recipe, plugins), plugins, quiet=True).execute(str(tmp / "run"))
    return out


def _arms(run_dir: Path) -> dict[str, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {a["name"]: a for a in metrics["arms"]}


def test_samples_and_generator_sharing_train_on_the_same_pool(run_dir: Path) -> None:
    arms = _arms(run_dir)
    samples, generator = arms["as-samples"], arms["as-generator"]
    # the server draws exactly the images the sites would have sent
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert samples["metrics"][key] == generator["metrics"][key]
    assert samples["fidelity"] == generator["fidelity"]
    # ... but what crossed differs: images (2 x 60 x 16 x 16 bytes and more) vs weights
    assert samples["metrics"]["bytes_to_server"] > 3 * 2 * 60 * 16 * 16
    assert samples["metrics"]["bytes_to_server"] != generator["metrics"]["bytes_to_server"]
    assert "synthetic images" in samples["shared"][0]
    assert "generator weights" in generator["shared"][0]
    assert samples["private"] and generator["private"]


def test_each_site_contributes_its_share_in_its_own_class_mix(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    arms = _arms(run_dir)
    for site, entry in zip(metrics["sites"], arms["as-samples"]["details"]["per_site"],
                           strict=True):
        assert entry["n_real"] == site["n"]
        assert entry["n_synthetic"] == 2 * site["n"]
        assert entry["class_counts_synthetic"] == [2 * c for c in site["class_counts"]]
    assert [s["n_synthetic"] for s in arms["fixed-count"]["details"]["per_site"]] == [25] * 3
    assert arms["fixed-count"]["details"]["n_train"] == 75


def test_fidelity_report_and_figures(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fid = _arms(run_dir)["as-samples"]["fidelity"]
    assert fid["pooled"]["n_fake"] == 360
    assert [s["site"] for s in fid["sites"]] == [0, 1, 2]
    ref = metrics["fidelity_reference"]["real_train_vs_test"]
    # 20 steps of a tiny GAN are far from real images; real training images are close
    assert ref["fd"] < fid["pooled"]["fd"]
    for value in (fid["pooled"]["precision"], fid["pooled"]["recall"]):
        assert 0.0 <= value <= 1.0
    report = (run_dir / "report.md").read_text()
    assert "## Synthetic data" in report and "*real training images*" in report
    for name in ("as-samples", "as-generator", "fixed-count"):
        assert (run_dir / f"synthetic-{name}.png").stat().st_size > 1000
        assert f"(synthetic-{name}.png)" in report


def test_memorisation_is_measured_for_every_synthetic_arm_without_attacks(run_dir: Path
                                                                        ) -> None:
    arms = _arms(run_dir)
    assert not arms["as-samples"].get("attacks")  # no audit in this run
    for name in ("as-samples", "as-generator", "pooled-generator"):
        sites = arms[name]["memorisation"]["sites"]
        assert [s["site"] for s in sites] == [0, 1, 2]
        for site in sites:  # a 20-step GAN copies nothing: a share, far from all copies
            assert 0.0 <= site["pixel"]["closer_to_members"] <= 1.0
            assert site["pixel"]["near_copies"] < 0.5
    assert "## Synthetic-data memorisation" in (run_dir / "report.md").read_text()


def test_generator_is_fit_once_per_site_and_kept_at_the_site(run_dir: Path) -> None:
    cache = run_dir.parent / "cache"
    blobs = [Payload.from_bytes(p.read_bytes(), str(p)) for p in cache.rglob("*.safetensors")]
    fitted = [b for b in blobs if b.meta.get("generator") == "gan"]
    assert len(fitted) == 3  # one fit per site, shared by three arms
    artifacts = sorted((run_dir / "artifacts" / "as-generator").iterdir())
    assert [p.name for p in artifacts] == [f"site-{i}-generator.safetensors" for i in range(3)]
    assert not (run_dir / "artifacts" / "as-samples").exists()  # nothing but samples left


def test_sample_command_draws_from_a_saved_generator(run_dir: Path, tmp_path: Path,
                                                     cli) -> None:
    path = run_dir / "artifacts" / "as-generator" / "site-1-generator.safetensors"
    out = tmp_path / "drawn.npz"
    result = cli("sample", str(path), "--n", "30", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    with np.load(out, allow_pickle=False) as drawn:
        assert drawn["images"].shape == (30, 1, 16, 16) and drawn["images"].dtype == np.uint8
        assert sorted(drawn.files) == ["attr_contrast", "attr_lesion_size", "attr_scanner",
                                       "images", "labels"]
    png = tmp_path / "grid.png"
    assert cli("sample", str(path), "--out", str(png)).returncode == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_corrupt_generator_file_is_one_line_naming_it(run_dir: Path, tmp_path: Path,
                                                     cli) -> None:
    good = (run_dir / "artifacts" / "as-generator" / "site-0-generator.safetensors").read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good[: len(good) // 2])
    result = cli("sample", str(broken), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and "not a valid" in lines[0]
    assert not (tmp_path / "x.png").exists()

    wrong = tmp_path / "samples.safetensors"  # a valid payload, but not a generator
    wrong.write_bytes(Payload({}, {"share": "samples"}).to_bytes())
    result = cli("sample", str(wrong), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "not a generator a site sent" in result.stderr


def test_tampered_generator_weights_are_refused_naming_the_site(tmp_path: Path) -> None:
    from synthlearn.arms.context import ArmContext
    from synthlearn.arms.synthetic import SyntheticArm, SyntheticConfig
    from synthlearn.errors import SynthlearnError

    plugins = load_plugins()
    recipe = check_recipe(small_recipe(arms=[synthetic_arm("g", "generator")]), plugins)
    arm = recipe.arms[0]
    ctx = ArmContext(arm=arm, arm_object=None, seed=0, sites=[], num_classes=3, in_chans=1,
                     image_size=(16, 16), runner=None, cache=None, hook=None,
                     evaluator=None)
    bad = Payload({"net.weight": torch.zeros(3)},
                  {"generator": {"generator": "gan", "format": 1}, "stats": {}, "n_real": 10})
    with pytest.raises(SynthlearnError, match="^site 2: "):
        SyntheticArm(SyntheticConfig(share="generator"))._sample_at_server(
            ctx, None, None, bad, "site 2", 1)


def test_validate_rejects_phenotypic_without_attributes(tmp_path: Path, write_recipe,
                                                        cli) -> None:
    recipe = small_recipe(data={"use": "digits", "params": {"size": 16}},
                          arms=[synthetic_arm("s", "samples")])
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: $.arms[0].conditioning: phenotypic conditioning needs phenotype attributes, "
        "and dataset 'digits' has none; use categorical")


def test_site_too_small_for_a_generator_names_the_site(tmp_path: Path, write_recipe,
                                                       cli) -> None:
    arm = synthetic_arm("s", "samples")
    arm["generator"] = {"use": "gan", "params": {"min_images": 61}}
    recipe = small_recipe(arms=[{"use": "centralized"}, arm])
    path = write_recipe(recipe)
    for command in ("validate", "run"):
        result = cli(command, str(path), "--quiet") if command == "run" else \
            cli(command, str(path))
        assert result.returncode == 2
        assert "$.arms[1].generator: site 0 has 60 images; the gan generator needs at " \
               "least 61 (params.min_images)" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_generator_and_conditioning_default_to_gan_and_categorical() -> None:
    recipe = check_recipe(small_recipe(arms=[{"use": "synthetic"}]), load_plugins())
    slots = recipe.arms[0].component.slots
    assert (slots["generator"].use, slots["conditioning"].use) == ("gan", "categorical")
    assert recipe.arms[0].component.config.share == "samples"


def test_count_and_multiple_together_are_rejected(write_recipe, cli) -> None:
    recipe = small_recipe(arms=[synthetic_arm("s", "samples", count=10, multiple=2.0)])
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2
    assert "$.arms[0].params" in result.stderr and "not both" in result.stderr


def test_recipe_yaml_of_the_run_names_generator_and_conditioning(run_dir: Path) -> None:
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    arm = saved["arms"][1]
    assert arm["generator"]["use"] == "gan" and arm["generator"]["params"]["steps"] == 20
    assert arm["conditioning"] == {"use": "phenotypic", "params": {"attributes": []}}


def test_regenerated_sets_cross_once_each_and_match_between_share_modes(run_dir: Path
                                                                       ) -> None:
    arms = _arms(run_dir)
    samples, generator = arms["redrawn-samples"], arms["redrawn-generator"]
    # 2 epochs, a fresh set every epoch: 2 sets, drawn alike by the sites and the server
    assert samples["details"]["sets"] == generator["details"]["sets"] == 2
    assert arms["as-samples"]["details"]["sets"] == 1
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert samples["metrics"][key] == generator["metrics"][key]
    # the sites sent both sets: twice the images of the single-set arm
    single = arms["as-samples"]["metrics"]["bytes_to_server"]
    assert 1.9 * single < samples["metrics"]["bytes_to_server"] < 2.1 * single
    # with share: generator the extra set costs nothing
    assert generator["metrics"]["bytes_to_server"] == \
        arms["as-generator"]["metrics"]["bytes_to_server"]
    # the first set is the single-set arm's pool: the same fidelity figures
    assert generator["fidelity"] == arms["as-generator"]["fidelity"]


def test_adapt_bn_and_calibrate_send_the_model_to_every_site_and_bring_back_statistics(
        run_dir: Path) -> None:
    arms = _arms(run_dir)
    adapted, plain = arms["adapted"], arms["as-generator"]
    assert adapted["details"]["adapted_batchnorm_layers"] > 5
    assert len(adapted["details"]["calibration_biases"]) == 2  # one per phantom class
    assert plain["metrics"]["bytes_to_sites"] == 0
    sent = adapted["metrics"]["bytes_to_sites"]
    # the model went to each of 3 sites twice (before adapting, before calibrating)
    assert sent > 6 * 1_000_000 and sent % 6 == 0
    extra = adapted["metrics"]["bytes_to_server"] - plain["metrics"]["bytes_to_server"]
    assert 0 < extra < sent / 10  # only statistics and biases came back
    shared = " ".join(adapted["shared"])
    assert "batch-norm" in shared and "logit biases" in shared
    # the figures after each step: the first is the plain arm's, the last the arm's own
    steps = adapted["details"]["steps"]
    assert [s["step"] for s in steps] == ["trained", "adapt_bn", "calibrate"]
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert steps[0][key] == plain["metrics"][key]
        assert steps[-1][key] == adapted["metrics"][key]
    assert steps[1]["auc"] != steps[0]["auc"]  # new statistics, new predictions
    biases = adapted["details"]["calibration_biases"]
    assert abs(sum(biases)) < 1e-6 and max(map(abs, biases)) > 1e-3


def test_label_smoothing_and_mixup_change_training_on_the_same_pool(run_dir: Path) -> None:
    arms = _arms(run_dir)
    smoothed, plain = arms["smoothed"], arms["as-samples"]
    assert smoothed["fidelity"] == plain["fidelity"]  # same images ...
    assert smoothed["metrics"]["auc"] != plain["metrics"]["auc"]  # ... other training


@pytest.mark.parametrize(("arm", "where", "message"), [
    ({"model": own_model(label_smoothing=1.0)}, "$.arms[0].model.params", "label_smoothing"),
    ({"params": {"share": "generator", "regenerate_every": 0}}, "$.arms[0].params",
     "regenerate_every"),
    ({"model": own_model(mixup=-1.0)}, "$.arms[0].model.params", "mixup"),
    # training options are the model's now: the old place says where they went
    ({"params": {"share": "generator", "mixup": 0.5}}, "$.arms[0].params",
     "$.model.params.mixup"),
])
def test_bad_training_params_are_one_line_at_their_path(write_recipe, cli, arm: dict, where: str,
                                                        message: str) -> None:
    recipe = small_recipe(arms=[{**synthetic_arm("s", "generator"), **arm}])
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {where}") \
        and message in lines[0], lines


class _CountingGenerator:
    """Blank images, one per condition; counts the images asked of it."""

    def __init__(self) -> None:
        self.drawn = 0

    def sample(self, conditions, seed: int) -> np.ndarray:
        self.drawn += len(conditions)
        return np.zeros((len(conditions), 1, 4, 4), dtype=np.uint8)


@pytest.mark.parametrize("scheme", ["categorical", "phenotypic"])
def test_equal_class_balance_draws_every_class_alike_on_an_imbalanced_site(scheme: str
                                                                            ) -> None:
    from synthlearn.data.types import ImageData
    from synthlearn.generation.conditioning import (
        CategoricalConditioning,
        CategoricalConfig,
        PhenotypicConditioning,
        PhenotypicConfig,
    )
    from synthlearn.generation.sharing import draw_pool
    from synthlearn.testing.recipes import tiny_dataset

    data = tiny_dataset(n_train=120, classes=3).train
    # an imbalanced site: 30 of class 0, 6 of class 1, none of class 2
    keep = np.concatenate([np.flatnonzero(data.labels == 0)[:30],
                           np.flatnonzero(data.labels == 1)[:6]])
    site = data.subset(keep)
    dataset = tiny_dataset(n_train=12, classes=3)
    conditioning = (CategoricalConditioning(CategoricalConfig()) if scheme == "categorical"
                    else PhenotypicConditioning(PhenotypicConfig()))
    stats = conditioning.summarize(site, 3, dataset.attributes)
    pools = {balance: draw_pool(_CountingGenerator(), conditioning, stats, 72, 7,
                                class_balance=balance) for balance in ("site", "equal")}
    assert pools["site"].class_counts(3) == [60, 12, 0]  # the site's own mix
    assert pools["equal"].class_counts(3) == [36, 36, 0]  # a class it lacks stays absent
    assert ImageData.concat([pools["equal"]] * 3).class_counts(3) == [108, 108, 0]
    if scheme == "phenotypic":  # attributes still follow the site given the class
        for name, values in pools["equal"].attributes.items():
            real = set(site.attributes[name][site.labels == 1].tolist())
            drawn = values[pools["equal"].labels == 1]
            if dataset.attributes[[a.name for a in dataset.attributes].index(name)].kind \
                    != "continuous":
                assert set(drawn.tolist()) <= real
    # the default draw is the one made before class_balance existed
    default = draw_pool(_CountingGenerator(), conditioning, stats, 72, 7)
    assert np.array_equal(default.labels, pools["site"].labels)


def test_equal_class_balance_in_a_run(run_dir: Path) -> None:
    arms = _arms(run_dir)
    for entry in arms["equal-draw"]["details"]["per_site"]:
        counts = entry["class_counts_synthetic"]
        assert max(counts) - min(counts) <= 1 and sum(counts) == entry["n_synthetic"]
    assert arms["equal-draw"]["details"]["class_balance"] == "equal"
    # class_balance: site is the default: the same numbers as the arm without it
    for key in ("accuracy", "balanced_accuracy", "auc", "bytes_to_server"):
        assert arms["site-draw"]["metrics"][key] == arms["as-samples"]["metrics"][key]
    assert arms["site-draw"]["fidelity"] == arms["as-samples"]["fidelity"]
    assert "class_balance" not in arms["as-samples"]["details"]


def test_a_pool_is_drawn_once_and_every_set_is_a_fresh_subset_of_it() -> None:
    from synthlearn.arms.synthetic import SyntheticConfig, pool_sets
    from synthlearn.generation.conditioning import CategoricalConditioning, CategoricalConfig
    from synthlearn.generation.sharing import draw_pool

    config = SyntheticConfig(multiple=2.0, regenerate_every=1, pool=3)
    assert (config.sets_for(4), config.draws_for(4), config.drawn_for(10)) == (4, 1, 60)
    generator, scheme = _CountingGenerator(), CategoricalConditioning(CategoricalConfig())
    stats = {"scheme": "categorical", "num_classes": 2, "class_counts": [5, 5]}
    pool = draw_pool(generator, scheme, stats, config.drawn_for(10), 0)
    pool.attributes["row"] = np.arange(60, dtype=np.float32)  # which image of the pool
    sets = pool_sets(pool, config.images_for(10), config.sets_for(4), 11)
    assert generator.drawn == 60  # sampled once, for all four sets
    rows = [tuple(s.attributes["row"].tolist()) for s in sets]
    assert all(len(set(r)) == 20 for r in rows) and len(set(rows)) == 4  # fresh subsets
    assert rows == [tuple(s.attributes["row"].tolist())
                    for s in pool_sets(pool, 20, 4, 11)]  # seeded
    with pytest.raises(ValueError, match="regenerate_every"):
        SyntheticConfig(pool=3)


def test_pooled_sets_match_between_share_modes_and_cross_once(run_dir: Path) -> None:
    arms = _arms(run_dir)
    samples, generator = arms["pooled-samples"], arms["pooled-generator"]
    assert samples["details"]["sets"] == generator["details"]["sets"] == 2
    assert samples["details"]["pool"] == 3 and samples["details"]["n_train"] == 360
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert samples["metrics"][key] == generator["metrics"][key]
    # the pool (3 sets' worth) crossed once, not a set per epoch
    single = arms["as-samples"]["metrics"]["bytes_to_server"]
    assert 2.8 * single < samples["metrics"]["bytes_to_server"] < 3.1 * single
    assert generator["metrics"]["bytes_to_server"] == \
        arms["as-generator"]["metrics"]["bytes_to_server"]
