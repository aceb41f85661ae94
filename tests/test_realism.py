"""FedGAN's realism score beside the Fréchet distance: a real-vs-synthetic classifier's
share of held-out synthetic images taken for real, its control on real images, and how
metrics.json and the report carry both."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from synthlearn.evaluation.fidelity import (
    REALISM_MIN_IMAGES,
    default_feature_space,
    fidelity,
    realism_score,
)
from synthlearn.execution.results import FidelityFigures, SiteFidelity
from synthlearn.report.markdown import render_report
from synthlearn.schema.from_attrs import ABSENT, from_json, to_json


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """scikit-learn's 1797 digits, upscaled from 8x8 to 28x28 uint8 (N, 1, 28, 28)."""
    images = zoom(load_digits().images * (255.0 / 16.0), (1, 3.5, 3.5), order=1)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)[:, None]


@pytest.fixture(scope="module")
def halves(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of 450 digits: one distribution, no shared image."""
    order = np.random.default_rng(0).permutation(len(digits))
    return digits[order[:450]], digits[order[450:900]]


@pytest.fixture(scope="module")
def features(halves: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    space = default_feature_space()
    return space(halves[0]), space(halves[1])


def test_same_distribution_cannot_be_told_apart(halves) -> None:
    result = fidelity(*halves)
    assert type(result["realism"]) is float and type(result["realism_real"]) is float
    assert abs(result["realism"] - 0.5) < 0.2
    assert abs(result["realism_real"] - 0.5) < 0.2
    assert json.loads(json.dumps(result)) == result


def test_same_distribution_over_seeds(features) -> None:
    """Around 0.5 whatever the split: the mean over seeds closer still."""
    scores = [realism_score(*features, seed=seed) for seed in range(4)]
    fake = [s["realism"] for s in scores]
    real = [s["realism_real"] for s in scores]
    assert all(abs(v - 0.5) < 0.2 for v in fake + real)
    assert abs(np.mean(fake) - 0.5) < 0.1 and abs(np.mean(real) - 0.5) < 0.1


@pytest.mark.parametrize("kind", ["noise", "constant"])
def test_different_distribution_is_told_apart(halves, kind: str) -> None:
    real = halves[0]
    if kind == "noise":
        fake = np.random.default_rng(1).integers(0, 256, real.shape, dtype=np.uint8)
    else:
        fake = np.full_like(real, 128)
    result = fidelity(real, fake)
    assert result["realism"] < 0.1
    assert result["realism_real"] > 0.9


def test_realism_falls_with_corruption(halves, features) -> None:
    """Noise added to the synthetic images makes them easier to tell from real ones."""
    space = default_feature_space()
    noise = np.random.default_rng(1).normal(0.0, 1.0, halves[1].shape)
    scores = [realism_score(features[0], space(np.clip(halves[1] + sigma * noise, 0, 255)
                                               .astype(np.uint8)))["realism"]
              for sigma in (0.0, 10.0, 60.0)]
    assert scores[0] > scores[1] > scores[2]
    assert scores[2] < 0.05


def test_deterministic_in_the_seed(features, halves) -> None:
    state = np.random.get_state()
    first = realism_score(*features, seed=3)
    assert realism_score(*features, seed=3) == first
    assert realism_score(features[0].copy(), features[1].copy(), seed=3) == first
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global RNG untouched
    others = [realism_score(*features, seed=s) for s in range(3)]
    assert len({(o["realism"], o["realism_real"]) for o in others}) > 1  # the seed counts
    assert fidelity(*halves, seed=2) == fidelity(*halves, seed=2)


def test_too_few_images_give_none(features, halves) -> None:
    few = REALISM_MIN_IMAGES - 1
    assert REALISM_MIN_IMAGES == 8
    assert realism_score(features[0][:few], features[1]) == {"realism": None,
                                                             "realism_real": None}
    assert realism_score(features[0], features[1][:few]) == {"realism": None,
                                                             "realism_real": None}
    enough = realism_score(features[0][:REALISM_MIN_IMAGES], features[1][:REALISM_MIN_IMAGES])
    assert all(type(v) is float and 0.0 <= v <= 1.0 for v in enough.values())
    # fidelity still gives fd / precision / recall for a set too small for realism
    result = fidelity(halves[0][:5], halves[1][:40])
    assert result["realism"] is None and result["realism_real"] is None
    assert type(result["fd"]) is float
    assert json.loads(json.dumps(result)) == result


def test_no_warning_leaks_and_shapes_are_checked(features) -> None:
    real, fake = features
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 20 samples of 448 features: separable on the fit half, a hard fit for lbfgs
        realism_score(real[:20], fake[:20] * 50.0)
        realism_score(real[:20], np.zeros_like(fake[:20]))
    with pytest.raises(ValueError, match="same F"):
        realism_score(real, fake[:, :10])
    with pytest.raises(ValueError, match="same F"):
        realism_score(real[0], fake)


def test_metrics_json_carries_realism_and_reads_old_figures() -> None:
    old = {"fd": 0.1, "precision": 0.8, "recall": 0.7, "n_real": 100, "n_fake": 90}
    figures = from_json(FidelityFigures, old)
    assert figures.realism is ABSENT and figures.realism_real is ABSENT
    assert to_json(figures) == old  # written by older code: read and written unchanged
    new = {**old, "realism": 0.45, "realism_real": 0.52}
    assert to_json(from_json(FidelityFigures, new)) == new
    small = {**old, "realism": None, "realism_real": None, "site": 2}
    assert to_json(from_json(SiteFidelity, small)) == small


def _row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r} in:\n{text}")


def test_report_has_a_realism_column() -> None:
    figures = {"n_fake": 100, "fd": 0.1, "precision": 0.8, "recall": 0.7}
    metrics = {
        "name": "r", "arms": [{
            "name": "synth", "use": "synthetic", "details": {"share": "samples"},
            "metrics": {"accuracy": 0.81},
            "fidelity": {"pooled": {**figures, "realism": 0.3125, "realism_real": 0.8},
                         "sites": [{**figures, "site": 0, "realism": None},
                                   {**figures, "site": 1}]}}],
        "fidelity_reference": {"real_train_vs_test": {**figures, "realism": 0.49}},
    }
    text = render_report(metrics).split("## Synthetic data", 1)[1]
    assert "Realism (FedGAN's realism score)" in text
    header = _row(text, "arm")
    assert header[header.index("recall") + 1] == "realism"
    assert _row(text, "synth") == ["synth", "all", "samples", "100", "0.10", "0.800",
                                   "0.700", "0.312", "0.810"]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
    assert [cells[7] for cells in rows if cells[0] == ""] == ["n/a", "n/a"]  # site rows
    assert _row(text, "*real training images*")[7] == "0.490"
