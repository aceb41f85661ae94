"""Fidelity of synthetic images (Fréchet distance, k-NN precision/recall) and the grid
figure of real next to synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import ImageData
from synthlearn.evaluation.fidelity import (
    FeatureSpace,
    default_feature_space,
    fidelity,
    frechet_distance,
    knn_precision_recall,
)
from synthlearn.report import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits, upscaled from 8x8 to 28x28 uint8 (N, 1, 28, 28)."""
    data = load_digits()
    images = zoom(data.images * (255.0 / 16.0), (1, 3.5, 3.5), order=1)
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)[:, None]
    return images, data.target.astype(np.int64)


@pytest.fixture(scope="module")
def halves(digits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of 450 (index arrays) of the digits."""
    order = np.random.default_rng(0).permutation(len(digits[0]))
    return order[:450], order[450:900]


@pytest.fixture(scope="module")
def halves_result(digits, halves) -> dict:
    """fidelity of one half of the digits against the other."""
    return fidelity(digits[0][halves[0]], digits[0][halves[1]])


def corrupt(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- fidelity


def test_identical_sets_score_perfectly(digits, halves) -> None:
    images = digits[0][halves[0]]
    result = fidelity(images, images)
    feats = default_feature_space()(images)
    scale = float(np.trace(np.cov(feats, rowvar=False)))
    assert scale > 0
    assert 0.0 <= result["fd"] < 1e-6 * scale
    assert result["precision"] == 1.0
    assert result["recall"] == 1.0
    assert result["n_real"] == result["n_fake"] == 450


def test_result_is_json_and_typed(halves_result) -> None:
    result = halves_result
    assert set(result) == {"fd", "precision", "recall", "realism", "realism_real", "n_real",
                           "n_fake"}
    assert all(type(result[key]) is float for key in ("fd", "precision", "recall"))
    assert type(result["n_real"]) is int and type(result["n_fake"]) is int
    assert json.loads(json.dumps(result)) == result
    # two halves of the same data: close, and both sets mostly cover each other
    assert result["fd"] > 0
    assert result["precision"] > 0.8 and result["recall"] > 0.8


def test_fd_grows_with_corruption(digits, halves) -> None:
    real = digits[0][halves[0]]
    small = fidelity(real, corrupt(real, 10.0))["fd"]
    big = fidelity(real, corrupt(real, 60.0))["fd"]
    assert 0.0 < small < big
    assert big > 5 * small


def test_mode_dropping_lowers_recall_not_precision(digits, halves) -> None:
    images, labels = digits
    real_index, rest = halves
    one_class = rest[labels[rest] == 0]
    random_same_size = np.random.default_rng(2).choice(rest, size=len(one_class), replace=False)
    dropped = fidelity(images[real_index], images[one_class])
    full = fidelity(images[real_index], images[random_same_size])
    assert dropped["recall"] < 0.5
    assert full["recall"] > 0.8
    assert full["recall"] - dropped["recall"] > 0.4
    assert dropped["precision"] > 0.75  # what it makes is realistic, just not varied
    assert dropped["fd"] > 5 * full["fd"]


def test_pure_noise_has_no_precision(digits, halves, halves_result) -> None:
    real = digits[0][halves[0]]
    noise = np.random.default_rng(3).integers(0, 256, size=real.shape, dtype=np.uint8)
    result = fidelity(real, noise)
    assert result["precision"] < 0.05
    assert result["recall"] < 0.05
    assert result["fd"] > 100 * halves_result["fd"]


def test_phantom_halves_closer_than_other_dataset(digits) -> None:
    data = PhantomDataset(PhantomConfig(n_train=300, n_test=300, size=28)).load(0)
    same = fidelity(data.train.images, data.test.images)
    other = fidelity(data.train.images, digits[0][:300])
    assert same["fd"] < other["fd"]
    assert same["precision"] > 0.7 and same["recall"] > 0.7
    assert other["precision"] < 0.2


def test_subsampling_is_deterministic(digits, halves) -> None:
    real, fake = digits[0][halves[0]], digits[0][halves[1]]
    a = fidelity(real, fake, max_images=100, seed=5)
    b = fidelity(real, fake, max_images=100, seed=5)
    c = fidelity(real, fake, max_images=100, seed=6)
    assert a["n_real"] == a["n_fake"] == 100
    assert a == b
    assert a["fd"] != c["fd"]


def test_too_few_images_and_shape_mismatch_raise(digits) -> None:
    images = digits[0]
    with pytest.raises(ValueError, match="at least k \\+ 1"):
        fidelity(images[:3], images[:50], k=3)
    with pytest.raises(ValueError, match="at least k \\+ 1"):
        fidelity(images[:50], images[:5], k=5)
    fidelity(images[:4], images[:4], k=3)  # exactly k + 1 is enough
    with pytest.raises(ValueError, match="differ"):
        fidelity(images[:50], np.repeat(images[:50], 3, axis=1))
    with pytest.raises(ValueError, match="differ"):
        fidelity(images[:50], images[:50, :, :20, :20])
    with pytest.raises(ValueError, match="N, C, H, W"):
        fidelity(images[:50, 0], images[:50, 0])


# --------------------------------------------------------------------------- the pieces


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_singular_covariance_is_zero_not_nan() -> None:
    feats = np.random.default_rng(5).normal(size=(20, 64))  # fewer samples than features
    value = frechet_distance(feats, feats)
    assert np.isfinite(value) and 0.0 <= value < 1e-9
    shifted = frechet_distance(feats, feats + 0.1)
    assert shifted == pytest.approx(64 * 0.01, rel=1e-6)


def test_knn_precision_recall_by_hand() -> None:
    # real points 0, 1, 2, 3 on a line: with k=1 every real ball has radius 1
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [4.0], [10.0]])
    # fake 0.5 and 4.0 lie inside real balls, 10 does not; the fake balls (radii 3.5,
    # 3.5, 6) around 0.5 and 4.0 cover every real point
    precision, recall = knn_precision_recall(real, fake, k=1)
    assert precision == pytest.approx(2 / 3)
    assert recall == 1.0
    # with k=2 the real ball around 3.0 has radius 2 (it reaches 1.0): 4.5 and 5.0 (on
    # its boundary) are inside, 10 is not
    precision, _ = knn_precision_recall(real, np.array([[4.5], [5.0], [10.0]]), k=2)
    assert precision == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        knn_precision_recall(real, fake, k=3)


def test_feature_space_deterministic_and_leaves_global_rng(digits) -> None:
    images = digits[0][:64]
    state = torch.get_rng_state()
    first = FeatureSpace()(images)
    second = FeatureSpace(batch_size=7)(images)
    assert torch.equal(state, torch.get_rng_state())
    assert first.dtype == np.float64 and first.shape == (64, FeatureSpace().dim)
    assert np.isfinite(first).all() and first.std(axis=0).max() > 0
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(first, FeatureSpace()(images))
    assert not np.allclose(first, FeatureSpace(seed=1)(images))


def test_feature_space_channels_and_sizes(digits) -> None:
    space = FeatureSpace()
    grey = digits[0][:16]
    rgb = np.repeat(grey, 3, axis=1)
    np.testing.assert_allclose(space(grey), space(rgb), rtol=1e-6, atol=1e-8)
    four = np.repeat(grey, 4, axis=1)
    np.testing.assert_allclose(space(four), space(grey), rtol=1e-5, atol=1e-7)
    colour = np.random.default_rng(6).integers(0, 256, size=(16, 3, 28, 28), dtype=np.uint8)
    assert not np.allclose(space(colour), space(grey))
    for shape in [(5, 1, 8, 8), (5, 3, 64, 48), (5, 2, 33, 33), (5, 1, 32, 32)]:
        images = np.random.default_rng(7).integers(0, 256, size=shape, dtype=np.uint8)
        feats = space(images)
        assert feats.shape == (5, space.dim) and np.isfinite(feats).all()
    with pytest.raises(ValueError, match="uint8"):
        space(grey.astype(np.float32))


# --------------------------------------------------------------------------- synthetic grid


def grid_inputs() -> tuple[list[tuple[int, ImageData]], dict[int, ImageData]]:
    data = PhantomDataset(PhantomConfig(n_train=120, n_test=20, size=16, classes=3)).load(0)
    train = data.train
    real = [(0, train.subset(np.arange(60))),
            (1, train.subset(np.flatnonzero(train.labels != 2)))]  # site 1 lacks "bar"
    synthetic = {0: train.subset(np.arange(60, 100)),
                 1: train.subset(np.flatnonzero(train.labels == 1))}
    return real, synthetic


def test_synthetic_grid_is_a_deterministic_png(tmp_path: Path) -> None:
    real, synthetic = grid_inputs()
    names = ["round", "ring", "bar"]
    first, second, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    figures.synthetic_grid(first, real, synthetic, names, seed=3, per_class=2)
    figures.synthetic_grid(second, real, synthetic, names, seed=3, per_class=2)
    figures.synthetic_grid(other, real, synthetic, names, seed=4, per_class=2)
    data = first.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data == second.read_bytes()
    assert data != other.read_bytes()  # the seed picks the images shown


def test_synthetic_grid_empty_is_a_message(tmp_path: Path) -> None:
    real, _ = grid_inputs()
    empty, message = tmp_path / "empty.png", tmp_path / "message.png"
    figures.synthetic_grid(empty, real, {}, ["round", "ring", "bar"], seed=0)
    figures.message_figure(message, "no synthetic images")
    assert empty.read_bytes().startswith(PNG_SIGNATURE)
    assert empty.read_bytes() == message.read_bytes()
