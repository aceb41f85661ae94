"""Filters of synthetic images (kind ``filter``): planted copies of a site's images are
rejected by the near-copy and reid filters while fresh images pass; the label-match
filter rejects candidates that show another class than their label; the screening loop redraws
what a filter rejects with the same conditions; bad verdicts and impossible recipes are
one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthlearn.data.digits import DigitsConfig, DigitsDataset
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.filters.label_match import LabelMatchConfig, LabelMatchFilter
from synthlearn.filters.near_copy import NearCopyConfig, NearCopyFilter
from synthlearn.filters.reid import ReidConfig, ReidFilter
from synthlearn.generation.filtering import (
    MAX_FACTS,
    FilterChain,
    Screening,
    received_screening,
    screened_pool,
    unfiltered_twins,
)
from synthlearn.testing import offer, run_recipe, small_recipe, tiny_dataset
from synthlearn.testing.run import check_in_process

N_PLANTED, N_FRESH = 20, 80


@pytest.fixture(scope="module")
def planted() -> tuple[ImageData, ImageData]:
    """A site's 300 phantom images, and candidates: exact copies of 20 of them followed
    by 80 real images the site never had."""
    data = tiny_dataset(n_train=300, n_test=N_FRESH)
    copies = data.train.subset(np.arange(0, 10 * N_PLANTED, 10))
    candidates = ImageData(images=np.concatenate([copies.images, data.test.images]),
                           labels=np.concatenate([copies.labels, data.test.labels]))
    return data.train, candidates


@pytest.fixture(scope="module")
def reid(planted: tuple[ImageData, ImageData]) -> ReidFilter:
    flt = ReidFilter(ReidConfig(steps=300, width=16, device="cpu"))
    flt.fit(planted[0], 0)
    return flt


def rejected(verdicts: list[str | None]) -> np.ndarray:
    return np.array([v is not None for v in verdicts])


def test_near_copy_filter_rejects_planted_copies_and_keeps_fresh_images(planted) -> None:
    real, candidates = planted
    flt = NearCopyFilter(NearCopyConfig(quantile=0.01))
    flt.fit(real, 0)
    out = rejected(flt.screen(candidates))
    assert out[:N_PLANTED].all()
    assert out[N_PLANTED:].sum() <= 2  # about the 1% quantile of real-to-real distances
    assert flt.screen(candidates)[0] == "near-copy"
    assert flt.describe()["threshold"] > 0


def test_reid_filter_rejects_planted_copies_and_keeps_fresh_images(planted, reid) -> None:
    real, candidates = planted
    verdicts = reid.screen(candidates)
    out = rejected(verdicts)
    assert out[:N_PLANTED].all() and verdicts[0] == "reid"
    assert out[N_PLANTED:].sum() <= 0.1 * N_FRESH
    facts = reid.describe()
    # calibrated on held-in pairs: augmented copies match, distinct site images do not
    assert facts["same_median"] > facts["threshold"] > facts["closest_other_median"]
    assert facts["false_match_rate"] < 0.1


def test_reid_filter_catches_a_shifted_copy(planted, reid) -> None:
    real, _ = planted
    shifted = np.roll(real.images[:N_PLANTED], 1, axis=-1)  # one pixel to the right
    out = rejected(reid.screen(ImageData(images=shifted, labels=real.labels[:N_PLANTED])))
    assert out.mean() >= 0.9


def test_reid_filter_is_deterministic_for_a_seed(planted) -> None:
    real, candidates = planted
    facts = []
    for _ in range(2):
        flt = ReidFilter(ReidConfig(steps=20, device="cpu"))
        flt.fit(real.subset(np.arange(64)), 3)
        facts.append((dict(flt.describe()), flt.screen(candidates)))
    assert facts[0] == facts[1]


class EveryOther:
    """A filter that rejects a candidate whose first pixel is odd ("odd")."""

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        pass

    def screen(self, candidates: ImageData) -> list[str | None]:
        return ["odd" if int(img.flat[0]) % 2 else None for img in candidates.images]

    def describe(self) -> dict:
        return {}


class Bright:
    """A filter that rejects a candidate whose first pixel is at least 3 ("bright"),
    recording the candidates it was shown and the seed it was fitted with."""

    def __init__(self) -> None:
        self.shown: list[int] = []
        self.seed: int | None = None

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        self.seed = seed

    def screen(self, candidates: ImageData) -> list[str | None]:
        self.shown.extend(int(img.flat[0]) for img in candidates.images)
        return ["bright" if int(img.flat[0]) >= 3 else None for img in candidates.images]

    def describe(self) -> dict:
        return {"level": 3}


def test_a_filter_chain_keeps_what_every_filter_keeps_and_names_the_first_rejection() -> None:
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)  # first pixels 0..5
    candidates = ImageData(images=images, labels=np.zeros(6, np.int64))
    bright = Bright()
    chain = FilterChain([EveryOther(), bright], ["every-other", "bright"])
    chain.fit(candidates, 7)
    assert chain.screen(candidates) == [None, "odd", None, "odd", "bright", "odd"]
    assert bright.shown == [0, 2, 4]  # the second filter sees what the first kept
    assert bright.seed == 7  # as if it were alone in the slot
    assert chain.describe() == {"bright.level": 3}
    twice = FilterChain([Bright(), Bright()], ["bright", "bright"])
    assert twice.describe() == {"0.bright.level": 3, "1.bright.level": 3}


def test_a_filter_chain_removes_planted_copies_with_both_reasons(planted) -> None:
    real, candidates = planted
    flt = FilterChain([NearCopyFilter(NearCopyConfig(quantile=0.01)), Bright()],
                      ["near-copy", "bright"])
    flt.fit(real, 0)
    verdicts = flt.screen(candidates)
    assert verdicts[:N_PLANTED] == ["near-copy"] * N_PLANTED
    fresh = [int(img.flat[0]) >= 3 for img in candidates.images[N_PLANTED:]]
    assert [v == "bright" for v in verdicts[N_PLANTED:]] == fresh  # near-copy kept them


def test_label_match_filter_rejects_candidates_showing_another_class() -> None:
    """Digits: a site of 300 images; candidates are 200 images it never had, once with
    their own labels and once with a wrong one (and a label the site has no images of)."""
    data = DigitsDataset(DigitsConfig(size=8)).load(0)
    site, fresh = data.train.subset(np.arange(300)), data.test.subset(np.arange(200))
    flt = LabelMatchFilter(LabelMatchConfig(epochs=10, lr=5e-3, batch_size=32, width=8,
                                            device="cpu"))
    flt.fit(site.subset(np.flatnonzero(site.labels < 9)), 0)  # no image of class 9
    facts = flt.describe()
    assert facts["held_out_accuracy"] > 0.8 and facts["miss_rate"] == 0.05
    known = fresh.labels < 9
    right = rejected(flt.screen(ImageData(images=fresh.images[known],
                                          labels=fresh.labels[known])))
    shifted = (fresh.labels[known] + 3) % 9
    verdicts = flt.screen(ImageData(images=fresh.images[known], labels=shifted))
    assert right.mean() <= 0.15  # about miss_rate: held-out real images fall below it
    assert rejected(verdicts).mean() >= 0.9 and "label-mismatch" in verdicts
    unknown = flt.screen(ImageData(images=fresh.images[:3], labels=np.full(3, 9)))
    assert unknown == ["label-mismatch"] * 3  # a class the site never had


def test_a_label_match_filter_that_learned_nothing_says_so(capsys) -> None:
    site = tiny_dataset(n_train=40).train
    LabelMatchFilter(LabelMatchConfig(epochs=1, device="cpu")).fit(site, 0)
    assert "the label-match filter's classifiers do no better" in capsys.readouterr().err


def test_label_match_filter_needs_images_of_every_class() -> None:
    data = DigitsDataset(DigitsConfig(size=8)).load(0).train
    few = data.subset(np.concatenate([np.flatnonzero(data.labels == 0)[:20],
                                      np.flatnonzero(data.labels == 1)[:3]]))
    with pytest.raises(SynthlearnError, match="needs at least 8 of each class"):
        LabelMatchFilter(LabelMatchConfig(device="cpu")).fit(few, 0)


def test_screened_pool_redraws_rejected_candidates_with_their_own_conditions() -> None:
    labels = np.arange(12) % 3
    pool = ImageData(images=np.full((12, 1, 4, 4), 1, np.uint8), labels=labels,
                     attributes={"size": np.arange(12, dtype=np.float32)})
    pool.images[::2] = 2  # half pass at once
    seen = []

    def redraw(rejected: ImageData, round_: int) -> np.ndarray:
        seen.append((rejected.labels.tolist(), rejected.attributes["size"].tolist()))
        # round 0 fixes all but the first; later rounds fix everything
        out = np.full((len(rejected), 1, 4, 4), 2, np.uint8)
        if round_ == 0:
            out[0] = 3
        return out

    record = Screening(filter="every-other")
    kept = screened_pool(pool, EveryOther(), redraw, record)
    assert seen[0] == ([1, 0, 2, 1, 0, 2], [1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    assert seen[1] == ([1], [1.0])
    assert kept.labels.tolist() == labels.tolist()  # class mix kept
    assert (kept.images == 2).all()
    assert record.to_json() == {"filter": "every-other", "drawn": 19, "rejected": {"odd": 7},
                                "rounds": 2, "unfilled": 0, "about": {}}


def test_screened_pool_leaves_out_what_stays_rejected() -> None:
    pool = ImageData(images=np.full((5, 1, 4, 4), 1, np.uint8), labels=np.zeros(5, np.int64))
    record = Screening(filter="every-other")
    kept = screened_pool(pool, EveryOther(), lambda rej, r: rej.images, record,
                         max_rounds=3)
    assert len(kept) == 0 and record.unfilled == 5 and record.drawn == 20
    assert record.rejected == {"odd": 20} and record.rounds == 3


@pytest.mark.parametrize(("verdicts", "message"), [
    (["x"], "screen returned 1 verdicts for 2 candidates"),
    ([None, 3], "screen gave 3; a verdict is None"),
    (None, "screen returned NoneType"),
])
def test_a_broken_filter_verdict_is_one_line(verdicts, message) -> None:
    class Broken(EveryOther):
        def screen(self, candidates: ImageData):
            return verdicts

    pool = ImageData(images=np.zeros((2, 1, 4, 4), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(SynthlearnError, match="acme-filter: " + message):
        screened_pool(pool, Broken(), lambda rej, r: rej.images, Screening(filter="x"),
                      label="acme-filter")


def test_a_hostile_screening_record_is_refused() -> None:
    good = {"filter": "reid", "drawn": 10, "rejected": {"reid": 2}, "rounds": 1,
            "unfilled": 0, "about": {"threshold": 0.8, "blob": "x" * 500}}
    from synthlearn import notices

    notices.start()
    assert received_screening({"filter": good}, 100, "site 0")["about"] == {"threshold": 0.8}
    many = {**good, "about": {f"part{i}.threshold": 0.5 for i in range(MAX_FACTS + 2)}}
    assert len(received_screening({"filter": many}, 100, "site 2")["about"]) == MAX_FACTS
    assert notices.collected() == [
        "site 0: left out 1 of the filter's 2 facts ('blob'): a fact is a number, a boolean "
        "or a text of at most 80 characters, under a key of at most 40, and at most 64 are "
        "kept",
        f"site 2: left out 2 of the filter's {MAX_FACTS + 2} facts ('part64.threshold', "
        "'part65.threshold'): a fact is a number, a boolean or a text of at most 80 "
        "characters, under a key of at most 40, and at most 64 are kept"]
    notices.start()
    greedy = {**good, "rejected": {"reid": 8}, "about": {"threshold": 0.8}}
    received_screening({"filter": greedy}, 100, "site 1")
    assert notices.collected() == [
        "site 1: the filter 'reid' rejected 80% of the 10 candidates drawn: the released "
        "images are mostly what it lets through (a generator that copies its images, or a "
        "filter that matches distinct images: see its false-match rate)"]
    for bad in ({**good, "drawn": 10**12}, {**good, "rejected": {"r" * 99: 1}},
                {**good, "rejected": {f"r{i}": 1 for i in range(40)}},
                {**good, "about": ["threshold", 0.8]}, "nope"):
        with pytest.raises(SynthlearnError, match="site 0"):
            received_screening({"filter": bad}, 100, "site 0")


@pytest.mark.parametrize(("arm", "expected"), [
    ({"params": {"share": "generator"}, "filter": {"use": "near-copy"}},
     "$.arms[0]: a filter needs share: samples"),
    ({"params": {"share": "samples", "drop_near_copies": 0.01}},
     "'drop_near_copies' moved to the arm's filter slot"),
    ({"filter": {"use": "reidd"}}, "did you mean 'reid'"),
    ({"filter": {"use": "reid", "params": {"miss_rate": 2}}}, "miss_rate"),
    ({"filter": {"use": "reid", "params": {"min_images": 100}}},
     "site 0 has 60 images; the reid filter needs at least 100"),
    ({"filter": []}, "$.arms[0].filter: a list of 0; give 1 to 8 filters"),
    ({"filter": ["near-copy"] * 9}, "$.arms[0].filter: a list of 9; give 1 to 8 filters"),
    ({"params": {"share": "samples"}, "filter": [{"use": "reidd"}, {"use": "nearcopy"}]},
     "$.arms[0].filter[0].use: unknown filter 'reidd'"),
    ({"params": {"share": "samples"}, "filter": [{"use": "reidd"}, {"use": "nearcopy"}]},
     "$.arms[0].filter[1].use: unknown filter 'nearcopy'"),
    ({"params": {"share": "samples"},
      "filter": [{"use": "near-copy"}, {"use": "reid", "params": {"min_images": 100}}]},
     "$.arms[0].filter[1]: site 0 has 60 images; the reid filter needs at least 100"),
    ({"generator": [{"use": "gan"}]},
     "$.arms[0].generator: takes one generator ({use: name, params: {...}}), not a list"),
])
def test_impossible_filter_recipes_are_one_line_errors(write_recipe, cli, arm: dict,
                                                       expected: str) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    entry = {"use": "synthetic", **arm}
    result = cli("validate", str(write_recipe(small_recipe(arms=[entry]))))
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_reid_filtered_arm_reports_its_screening(tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    gan = {"use": "gan", "params": {"steps": 4, "width": 8, "batch_size": 8}}
    recipe = small_recipe(arms=[{
        "name": "filtered", "use": "synthetic", "params": {"share": "samples"},
        "generator": gan, "filter": {"use": "reid", "params": {"steps": 20}}}])
    metrics = run_recipe(recipe, tmp_path=tmp_path)
    per_site = metrics["arms"][0]["details"]["per_site"]
    for site in per_site:
        screening = site["screening"]
        assert screening["filter"] == "reid" and 0 <= screening["unfilled"] <= site["n_real"]
        assert screening["drawn"] >= site["n_real"]
        assert {"threshold", "false_match_rate"} <= set(screening["about"])
        assert site["n_synthetic"] == site["n_real"] - screening["unfilled"]
    report = (metrics.run_dir / "report.md").read_text()
    assert "filtered at the site" in report and "drawn" in report
    facts_table = report.split("### What each site's filter set", 1)[1]
    for site in per_site:  # each site's own calibrated threshold, as the report rounds it
        threshold = site["screening"]["about"]["threshold"]
        row = next(line for line in facts_table.splitlines()
                   if line.startswith(f"| filtered | {site['site']} | reid |"))
        assert f"threshold {threshold:.3f}" in row and "false_match_rate" in row


def test_a_filtered_arm_is_twinned_with_the_same_arm_without_its_filter() -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    plain = {"name": "plain", "use": "synthetic", "params": {"share": "samples"},
             "generator": {"use": "gan", "params": {"steps": 4}}}
    wider = {**plain, "name": "wider", "params": {"share": "samples", "multiple": 2.0}}
    near_copy = {"use": "near-copy"}
    arms = [{**wider, "name": "wider-filtered", "filter": near_copy},  # its twin comes later
            {**plain, "name": "filtered", "filter": near_copy},
            {**plain, "name": "chained", "filter": [{"use": "reid"}, near_copy]},
            {**plain, "name": "other-generator", "filter": near_copy,
             "generator": {"use": "gan", "params": {"steps": 5}}},
            {**plain, "name": "other-model", "filter": near_copy,
             "model": {"use": "timm", "params": {"arch": "test_resnet", "epochs": 3}}},
            plain, wider]
    recipe, _ = check_in_process(small_recipe(arms=arms))
    assert unfiltered_twins(recipe.arms) == {"wider-filtered": "wider", "filtered": "plain",
                                             "chained": "plain"}


class DarkOnly:
    """A third party's filter: rejects the brightest quarter of every batch it screens."""

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        self.batches = 0

    def screen(self, candidates: ImageData) -> list[str | None]:
        self.batches += 1
        means = candidates.images.reshape(len(candidates), -1).mean(axis=1)
        cut = np.quantile(means, 0.75) if len(means) else 0.0
        return ["bright" if mean > cut else None for mean in means]

    def describe(self) -> dict[str, int]:
        return {"batches": self.batches}


def test_the_report_sets_a_filtered_arm_beside_its_twin(tmp_path: Path) -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    plain = {"name": "plain", "use": "synthetic", "params": {"share": "samples"},
             "generator": {"use": "gan", "params": {"steps": 4, "width": 8, "batch_size": 8,
                                                    "min_images": 8}}}
    recipe = small_recipe(arms=[plain, {**plain, "name": "filtered", "filter": "dark-only"}],
                          attacks=[{"use": "loss"}])
    metrics = run_recipe(recipe, [offer("filter", "dark-only", DarkOnly())], tmp_path=tmp_path)
    before, after = metrics["arms"]
    assert after["unfiltered_twin"] == "plain" and "unfiltered_twin" not in before
    section = (metrics.run_dir / "report.md").read_text().split(
        "## What each filter changed", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| filtered | plain |"))
    for key in ("accuracy", "auc"):
        assert f"{before['metrics'][key]:.3f} → {after['metrics'][key]:.3f}" in row
    loss_before, loss_after = before["attacks"]["loss"], after["attacks"]["loss"]
    assert (f"{loss_before['auc']:.3f} ({loss_before['control_auc']:.3f}) → "
            f"{loss_after['auc']:.3f} ({loss_after['control_auc']:.3f})") in row
    changed = 0
    for old, new, detail in zip(before["memorisation"]["sites"], after["memorisation"]["sites"],
                                after["details"]["per_site"], strict=True):
        site_row = next(line for line in section.splitlines()
                        if line.startswith(f"| filtered | {new['site']} |"))
        closer = old["pixel"]["closer_to_members"], new["pixel"]["closer_to_members"]
        assert f"{closer[0]:.3f} → {closer[1]:.3f}" in site_row
        assert f"{detail['screening']['rejected']['bright']} bright of " in site_row
        changed += closer[0] != closer[1]
    assert changed  # the filter changed what left the sites, and the table shows which way
