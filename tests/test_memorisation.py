"""Synthetic-data memorisation: distances to members and non-members, near-copies, and
the site-side filter, with a generator that copies its training images (the degenerate
generator every privacy measure must catch) registered as a third-party plugin."""

from __future__ import annotations

import json
import sys

import attrs
import numpy as np
import pytest
from conftest import small_recipe
from synthlearn.arms.synthetic import SyntheticConfig
from synthlearn.evaluation.memorisation import memorisation, near_copy_mask, nearest
from synthlearn.execution.run import Run
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe

COPYCAT = """
import attrs
import numpy as np
import torch
from synthlearn import ComponentSpec, hookimpl
from synthlearn.sitework.exchange import Payload

@attrs.define(frozen=True)
class Cfg:
    noise: float = 0.0    # pixel noise added to the copies
    copies: float = 1.0   # share of samples that are copies; the rest is random noise

class Copycat:
    '''Samples by handing back training images of the asked-for class.'''
    def __init__(self, config):
        self.config = config
    def fit(self, data, conditions, num_classes, seed, *, progress=True, desc=""):
        self.images, self.labels = data.images.copy(), conditions.labels.copy()
    def sample(self, conditions, seed):
        rng = np.random.default_rng(seed)
        out = []
        for label in conditions.labels:
            pick = rng.choice(np.flatnonzero(self.labels == label))
            img = self.images[pick].astype(float)
            img += rng.normal(0, self.config.noise, img.shape)
            if rng.random() >= self.config.copies:
                img = rng.uniform(0, 255, img.shape)
            out.append(np.clip(img, 0, 255).astype(np.uint8))
        return np.stack(out)
    def state(self):
        return Payload({"images": torch.from_numpy(self.images),
                        "labels": torch.from_numpy(self.labels)}, {})
    def load(self, payload, source):
        self.images = payload.tensors["images"].numpy()
        self.labels = payload.tensors["labels"].numpy()

@hookimpl
def synthlearn_register_generators():
    return [ComponentSpec("copycat", Cfg, Copycat, "copies training images")]
"""


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


def test_nearest_distance() -> None:
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert np.allclose(nearest(a, a), [0.0, 0.0])
    assert np.allclose(nearest(a, a, exclude_self=True), [5.0, 5.0])


def test_copies_are_caught_and_fresh_images_are_not() -> None:
    rng = np.random.default_rng(0)
    members, nonmembers, fresh = images(rng, 200), images(rng, 200), images(rng, 200)
    copies = memorisation(members[:150], members, nonmembers)
    for space in ("pixel", "feature"):
        assert copies[space]["closer_to_members"] == 1.0
        assert copies[space]["near_copies"] == 1.0
        assert copies[space]["median_distance_to_members"] == pytest.approx(0.0, abs=1e-6)
    honest = memorisation(fresh, members, nonmembers)
    for space in ("pixel", "feature"):
        assert abs(honest[space]["closer_to_members"] - 0.5) < 0.1
        assert honest[space]["near_copies"] < 0.05
    mask, threshold = near_copy_mask(np.concatenate([members[:10], fresh[:10]]), members)
    assert mask.tolist() == [True] * 10 + [False] * 10 and threshold > 0


def test_drop_near_copies_moved_to_the_filter_slot() -> None:
    assert "drop_near_copies" not in {f.name for f in attrs.fields(SyntheticConfig)}
    assert "near-copy" in SyntheticConfig.__synthlearn_moved__["drop_near_copies"]


@pytest.fixture(scope="module")
def copycat_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copying generator, unfiltered and filtered at the site, audited by the loss
    attack (memorisation is measured for every arm with synthetic images)."""
    pytest.importorskip("synthlearn_mia", reason="the synthlearn-mia plugin is not installed")
    tmp = tmp_path_factory.mktemp("copycat")
    (tmp / "mods").mkdir()
    (tmp / "mods" / "acme_copycat.py").write_text(COPYCAT)
    gen = {"use": "copycat", "params": {"noise": 2.0}}
    half = {"use": "copycat", "params": {"noise": 2.0, "copies": 0.5}}
    recipe = small_recipe(
        arms=[{"name": "copies", "use": "synthetic", "params": {"share": "samples"},
               "generator": gen},
              {"name": "filtered", "use": "synthetic",
               "params": {"share": "samples"}, "generator": half,
               "filter": {"use": "near-copy", "params": {"quantile": 0.01}}}],
        attacks=[{"use": "loss"}],
        output={"dir": str(tmp / "runs"), "cache": None},
    )
    recipe["model"]["params"]["epochs"] = 1
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(tmp / "mods"))
        mp.setenv("SYNTHLEARN_PLUGINS", "acme_copycat")
        plugins = load_plugins()
        assert not plugins.problems, plugins.problems
        out = Run(check_recipe(recipe, plugins), plugins, quiet=True).execute(str(tmp / "run"))
    sys.modules.pop("acme_copycat", None)
    return {a["name"]: a for a in
            json.loads((out / "metrics.json").read_text())["arms"]} | {
        "_report": (out / "report.md").read_text()}


def test_memorisation_of_a_copying_generator_is_reported(copycat_run: dict) -> None:
    copies = copycat_run["copies"]
    assert [s["site"] for s in copies["memorisation"]["sites"]] == [0, 1, 2]
    for site in copies["memorisation"]["sites"]:
        assert site["pixel"]["closer_to_members"] > 0.95
        assert site["pixel"]["near_copies"] > 0.9
    report = copycat_run["_report"]
    assert "## Synthetic-data memorisation" in report
    assert "| copies | 0 |" in report


def test_site_side_filter_redraws_the_copies_before_they_leave(copycat_run: dict) -> None:
    per_site = copycat_run["filtered"]["details"]["per_site"]
    for site in per_site:  # half of every draw is a copy: about n, n/2, n/4, ... redrawn
        screening = site["screening"]
        assert screening["filter"] == "near-copy"
        rejected = screening["rejected"]["near-copy"]
        assert 0.7 * site["n_real"] < rejected < 1.3 * site["n_real"]
        assert screening["drawn"] == site["n_real"] + rejected - screening["unfilled"]
        assert site["n_synthetic"] + screening["unfilled"] == site["n_real"]
        assert screening["unfilled"] <= 2 and screening["rounds"] >= 3
        assert screening["about"]["quantile"] == 0.01
    # what did leave is no longer a near-copy
    for site in copycat_run["filtered"].get("memorisation", {}).get("sites", []):
        assert site["pixel"]["near_copies"] == 0.0
