"""The built-in partitions: iid, dirichlet, by-attribute."""

from __future__ import annotations

import numpy as np
import pytest
from synthlearn.data.partitions import (
    ByAttributeConfig,
    ByAttributePartition,
    DirichletConfig,
    DirichletPartition,
    IIDConfig,
    IIDPartition,
    stratified_split,
)
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import ImageData
from synthlearn.errors import DataError
from synthlearn.interfaces import Partitioner


def make_data(counts: list[int], **attributes: np.ndarray) -> ImageData:
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = np.random.default_rng(123).permutation(labels).astype(np.int64)
    n = len(labels)
    return ImageData(images=np.zeros((n, 1, 2, 2), np.uint8), labels=labels,
                     attributes={k: v.astype(np.float32) for k, v in attributes.items()})


def check_partition(parts: list[np.ndarray], n: int, n_sites: int) -> None:
    assert len(parts) == n_sites
    for part in parts:
        assert part.dtype == np.int64
        assert len(part) > 0
        assert np.all(np.diff(part) > 0)  # sorted, no duplicates
    everything = np.concatenate(parts)
    assert len(everything) == n  # disjoint ...
    assert np.array_equal(np.sort(everything), np.arange(n))  # ... and covering


def skew(data: ImageData, parts: list[np.ndarray], num_classes: int) -> float:
    """Mean total-variation distance of the sites' class mix from the global mix."""
    overall = np.bincount(data.labels, minlength=num_classes) / len(data)
    distances = []
    for part in parts:
        mix = np.bincount(data.labels[part], minlength=num_classes) / len(part)
        distances.append(0.5 * np.abs(mix - overall).sum())
    return float(np.mean(distances))


ALL = [IIDPartition(IIDConfig()), DirichletPartition(DirichletConfig()),
       ByAttributePartition(ByAttributeConfig(attribute="group"))]


@pytest.mark.parametrize("partition", ALL, ids=["iid", "dirichlet", "by-attribute"])
@pytest.mark.parametrize("n_sites", [1, 3, 7])
def test_disjoint_covering_deterministic(partition, n_sites):
    data = make_data([300, 200, 100], group=np.arange(600) % 7)
    assert isinstance(partition, Partitioner)
    parts = partition.split(data, n_sites, np.random.default_rng(0))
    check_partition(parts, len(data), n_sites)
    again = partition.split(data, n_sites, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


@pytest.mark.parametrize("partition", ALL, ids=["iid", "dirichlet", "by-attribute"])
def test_bad_site_counts(partition):
    data = make_data([3, 2], group=np.arange(5) % 5)
    with pytest.raises(DataError, match="at least 1, got 0"):
        partition.split(data, 0, np.random.default_rng(0))
    with pytest.raises(DataError, match="cannot make 6 sites from 5 images"):
        partition.split(data, 6, np.random.default_rng(0))


def test_iid_per_class_balance():
    data = make_data([301, 199, 100])
    parts = IIDPartition().split(data, 4, np.random.default_rng(1))
    counts = np.array([np.bincount(data.labels[p], minlength=3) for p in parts])
    assert np.all(counts.max(axis=0) - counts.min(axis=0) <= 1)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert skew(data, parts, 3) < 0.01
    other = IIDPartition().split(data, 4, np.random.default_rng(2))
    assert not np.array_equal(parts[0], other[0])


def test_dirichlet_skew_grows_as_alpha_shrinks():
    data = make_data([400, 400, 400, 400])
    skews = {}
    for alpha in (0.1, 1.0, 100.0):
        part = DirichletPartition(DirichletConfig(alpha=alpha, min_per_site=10))
        skews[alpha] = np.mean([skew(data, part.split(data, 5, np.random.default_rng(s)), 4)
                                for s in range(5)])
    assert skews[0.1] > skews[1.0] > skews[100.0]
    assert skews[0.1] > 0.4
    assert skews[100.0] < 0.1


@pytest.mark.parametrize("alpha", [0.05, 0.5, 5.0])
def test_dirichlet_min_per_site(alpha):
    data = make_data([500, 100])
    for seed in range(5):
        parts = DirichletPartition(DirichletConfig(alpha=alpha, min_per_site=40)).split(
            data, 10, np.random.default_rng(seed))
        check_partition(parts, len(data), 10)
        assert min(len(p) for p in parts) >= 40


def test_dirichlet_tight_minimum_is_still_met():
    # exactly enough images: every site must get exactly the minimum
    data = make_data([25, 5])
    parts = DirichletPartition(DirichletConfig(alpha=0.1, min_per_site=10)).split(
        data, 3, np.random.default_rng(0))
    assert [len(p) for p in parts] == [10, 10, 10]


def test_dirichlet_min_zero_still_no_empty_site():
    data = make_data([10, 10])
    for seed in range(20):
        parts = DirichletPartition(DirichletConfig(alpha=0.01, min_per_site=0)).split(
            data, 8, np.random.default_rng(seed))
        check_partition(parts, len(data), 8)


def test_dirichlet_seed_dependent():
    data = make_data([300, 300])
    part = DirichletPartition(DirichletConfig(alpha=0.5))
    a = part.split(data, 3, np.random.default_rng(0))
    b = part.split(data, 3, np.random.default_rng(1))
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_dirichlet_impossible():
    data = make_data([20, 10])
    with pytest.raises(DataError, match="cannot give 5 sites at least 10 images each "
                                        "from 30 images"):
        DirichletPartition(DirichletConfig(min_per_site=10)).split(
            data, 5, np.random.default_rng(0))


def test_dirichlet_bad_config():
    with pytest.raises(DataError, match="alpha must be > 0"):
        DirichletPartition(DirichletConfig(alpha=0.0))
    with pytest.raises(DataError, match="min_per_site"):
        DirichletPartition(DirichletConfig(min_per_site=-1))


def test_by_attribute_phantom_scanner():
    ds = PhantomDataset(PhantomConfig(n_train=300, n_test=30, scanners=3)).load(0)
    parts = ByAttributePartition(ByAttributeConfig()).split(ds.train, 3,
                                                            np.random.default_rng(0))
    check_partition(parts, len(ds.train), 3)
    scanner = ds.train.attributes["scanner"]
    assert [np.unique(scanner[p]).tolist() for p in parts] == [[0.0], [1.0], [2.0]]
    assert [len(p) for p in parts] == [100, 100, 100]


def test_by_attribute_round_robin_of_more_values():
    data = make_data([50, 50], group=np.arange(100) % 5)
    parts = ByAttributePartition(ByAttributeConfig(attribute="group")).split(
        data, 2, np.random.default_rng(0))
    groups = data.attributes["group"]
    assert [np.unique(groups[p]).tolist() for p in parts] == [[0, 2, 4], [1, 3]]


def test_by_attribute_continuous_quantiles():
    values = np.random.default_rng(0).uniform(0, 10, size=400)
    data = make_data([200, 200], size=values)
    parts = ByAttributePartition(ByAttributeConfig(attribute="size")).split(
        data, 4, np.random.default_rng(0))
    check_partition(parts, 400, 4)
    assert [len(p) for p in parts] == [100, 100, 100, 100]
    sizes = data.attributes["size"]
    for low, high in zip(parts, parts[1:], strict=False):
        assert sizes[low].max() <= sizes[high].min()


def test_by_attribute_forced_kind():
    data = make_data([30, 30], group=np.arange(60) % 3)
    parts = ByAttributePartition(ByAttributeConfig(attribute="group", kind="continuous")).split(
        data, 2, np.random.default_rng(0))
    assert [len(p) for p in parts] == [30, 30]
    with pytest.raises(DataError, match="kind must be"):
        ByAttributePartition(ByAttributeConfig(kind="ordinal"))


def test_by_attribute_errors():
    data = make_data([30, 30], group=np.arange(60) % 2, age=np.linspace(1, 80, 60))
    with pytest.raises(DataError, match=r"unknown attribute 'scanner' \(available: age, group\)"):
        ByAttributePartition(ByAttributeConfig()).split(data, 2, np.random.default_rng(0))
    with pytest.raises(DataError, match="2 distinct values, fewer than 3 sites"):
        ByAttributePartition(ByAttributeConfig(attribute="group")).split(
            data, 3, np.random.default_rng(0))
    with pytest.raises(DataError, match=r"available: none"):
        ByAttributePartition(ByAttributeConfig()).split(make_data([5, 5]), 2,
                                                        np.random.default_rng(0))


def test_stratified_split():
    labels = make_data([40, 20, 2]).labels
    train, test = stratified_split(labels, 0.25, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(62))
    assert np.bincount(labels[test]).tolist() == [10, 5, 1]
    with pytest.raises(DataError, match="test_fraction"):
        stratified_split(labels, 0.0, np.random.default_rng(0))
