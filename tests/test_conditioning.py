"""Conditioning schemes: aggregate statistics, encoding, and new conditions that follow a
site's own mix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthlearn.data.digits import DigitsConfig, DigitsDataset
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import AttributeInfo, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.generation.conditioning import (
    CategoricalConditioning,
    CategoricalConfig,
    PhenotypicConditioning,
    PhenotypicConfig,
    proportional_counts,
)


@pytest.fixture(scope="module")
def phantom():
    return PhantomDataset(PhantomConfig(n_train=600, n_test=60, size=16, classes=3,
                                        scanners=3)).load(0)


def test_proportional_counts_are_exact_and_sum_to_n() -> None:
    assert proportional_counts([10, 30], 8) == [2, 6]
    assert proportional_counts([1, 1, 1], 10) == [4, 3, 3]
    assert sum(proportional_counts([7, 0, 5, 3], 101)) == 101
    assert proportional_counts([7, 0, 5, 3], 101)[1] == 0


def test_categorical_follows_the_site_class_counts(phantom) -> None:
    site = phantom.train.subset(np.flatnonzero(phantom.train.labels != 2)[:200])
    scheme = CategoricalConditioning(CategoricalConfig())
    stats = scheme.summarize(site, 3, phantom.attributes)
    labels, attributes = scheme.sample(stats, 400, np.random.default_rng(0))
    counts = np.bincount(labels, minlength=3)
    assert counts.tolist() == proportional_counts(site.class_counts(3), 400)
    assert counts[2] == 0  # a class the site lacks is never asked for
    assert attributes == {}
    conditions = scheme.encode(labels, attributes, stats)
    assert conditions.vector_size == 0 and len(conditions) == 400


def test_phenotypic_statistics_are_aggregate_json(phantom) -> None:
    scheme = PhenotypicConditioning(PhenotypicConfig())
    stats = scheme.summarize(phantom.train, 3, phantom.attributes)
    text = json.dumps(stats)  # JSON as it travels
    # nothing per image: the statistics do not grow with the site
    bigger = scheme.summarize(phantom.train.subset(np.arange(300)), 3, phantom.attributes)
    assert abs(len(json.dumps(bigger)) - len(text)) < 400
    assert stats["continuous"] == ["lesion_size", "contrast"]
    assert stats["categorical"] == {"scanner": [0.0, 1.0, 2.0]}


def test_phenotypic_samples_follow_attributes_given_the_class(phantom) -> None:
    train = phantom.train
    scheme = PhenotypicConditioning(PhenotypicConfig())
    stats = scheme.summarize(train, 3, phantom.attributes)
    labels, attrs = scheme.sample(stats, 6000, np.random.default_rng(1))
    assert np.bincount(labels, minlength=3).tolist() == proportional_counts(
        train.class_counts(3), 6000)
    for c in range(3):
        real, fake = train.labels == c, labels == c
        for name in ("lesion_size", "contrast"):
            assert abs(attrs[name][fake].mean() - train.attributes[name][real].mean()) < 0.03
            assert attrs[name][fake].min() >= train.attributes[name][real].min() - 1e-6
            assert attrs[name][fake].max() <= train.attributes[name][real].max() + 1e-6
        real_freq = np.bincount(train.attributes["scanner"][real].astype(int), minlength=3)
        fake_freq = np.bincount(attrs["scanner"][fake].astype(int), minlength=3)
        np.testing.assert_allclose(fake_freq / fake.sum(), real_freq / real.sum(), atol=0.04)


def test_phenotypic_keeps_the_correlation_between_continuous_attributes() -> None:
    rng = np.random.default_rng(0)
    size = rng.uniform(0.5, 1.5, 3000)
    contrast = 0.8 * size + rng.normal(0, 0.05, 3000)  # strongly correlated
    data = ImageData(np.zeros((3000, 1, 4, 4), np.uint8), np.zeros(3000, np.int64),
                     {"size": size.astype(np.float32), "contrast": contrast.astype(np.float32)})
    info = (AttributeInfo("size", "continuous"), AttributeInfo("contrast", "continuous"))
    scheme = PhenotypicConditioning(PhenotypicConfig())
    stats = scheme.summarize(data, 1, info)
    _, attrs = scheme.sample(stats, 3000, np.random.default_rng(2))
    assert np.corrcoef(attrs["size"], attrs["contrast"])[0, 1] > 0.9


def test_phenotypic_binary_rates_and_encoding() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    finding = (rng.random(4000) < np.where(labels == 1, 0.8, 0.1)).astype(np.float32)
    data = ImageData(np.zeros((4000, 1, 4, 4), np.uint8), labels, {"finding": finding})
    scheme = PhenotypicConditioning(PhenotypicConfig())
    stats = scheme.summarize(data, 2, (AttributeInfo("finding", "binary"),))
    new_labels, attrs = scheme.sample(stats, 4000, np.random.default_rng(3))
    assert abs(attrs["finding"][new_labels == 1].mean() - 0.8) < 0.04
    assert abs(attrs["finding"][new_labels == 0].mean() - 0.1) < 0.04
    vectors = scheme.encode(labels, {"finding": finding}, stats).vectors
    assert vectors.shape == (4000, 1)
    assert set(np.unique(vectors).tolist()) == {-1.0, 1.0}


def test_phenotypic_encoding_is_standardised_and_one_hot(phantom) -> None:
    scheme = PhenotypicConditioning(PhenotypicConfig())
    stats = scheme.summarize(phantom.train, 3, phantom.attributes)
    vectors = scheme.encode(phantom.train.labels, phantom.train.attributes, stats).vectors
    assert vectors.shape == (600, 2 + 3)
    np.testing.assert_allclose(vectors[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(vectors[:, :2].std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(vectors[:, 2:].sum(axis=1), 1.0)


def test_phenotypic_subset_of_attributes(phantom) -> None:
    scheme = PhenotypicConditioning(PhenotypicConfig(attributes=["contrast"]))
    stats = scheme.summarize(phantom.train, 3, phantom.attributes)
    assert stats["continuous"] == ["contrast"] and stats["categorical"] == {}
    _, attrs = scheme.sample(stats, 10, np.random.default_rng(0))
    assert set(attrs) == {"contrast"}


def test_phenotypic_rejects_data_without_attributes(phantom) -> None:
    digits = DigitsDataset(DigitsConfig()).load(0)
    with pytest.raises(SynthlearnError, match="'digits' has none; use categorical"):
        PhenotypicConditioning(PhenotypicConfig()).check(digits, [])
    with pytest.raises(SynthlearnError, match="no attribute 'age'; it has lesion_size"):
        PhenotypicConditioning(PhenotypicConfig(attributes=["age"])).check(phantom, [])
