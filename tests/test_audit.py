"""The membership audit's candidate pool and the way it deals data into sites."""

from __future__ import annotations

import numpy as np
import pytest
from synthlearn import SynthlearnError
from synthlearn.data.types import ImageData
from synthlearn.evaluation.audit import CandidatePool, split_like_sites


def labelled(n: int, start: int, classes: int = 2) -> ImageData:
    """Images whose first pixel is their own running number (to trace them)."""
    images = np.zeros((n, 1, 4, 4), np.uint8)
    images[:, 0, 0, 0] = np.arange(start, start + n)
    return ImageData(images, np.arange(n) % classes)


def ids(data: ImageData) -> set[int]:
    return set(data.images[:, 0, 0, 0].tolist())


def test_pool_has_equal_members_and_nonmembers_and_leaves_half_for_the_control() -> None:
    sites = {0: labelled(40, 0), 1: labelled(60, 40)}
    holdout = labelled(80, 150)
    pool = CandidatePool.draw(sites, holdout, seed=3)
    n = 50  # half of the 100 members; the holdout has more
    assert pool.is_member.tolist() == [True] * n + [False] * n
    members, others = pool.data.subset(np.arange(n)), pool.data.subset(np.arange(n, 2 * n))
    assert ids(members) <= set(range(100)) and len(ids(members)) == n
    assert ids(others) <= set(range(150, 230)) and len(ids(others)) == n
    # the members taken from each site are exactly the ones the control must not see
    assert sum(len(t) for t in pool.taken.values()) == n
    rest = pool.without_members(sites)
    assert [len(r) for r in rest] == [40 - len(pool.taken[0]), 60 - len(pool.taken[1])]
    assert not (ids(ImageData.concat(rest)) & ids(members))
    assert ids(ImageData.concat(rest)) | ids(members) == set(range(100))
    again = CandidatePool.draw(sites, holdout, seed=3)
    assert np.array_equal(again.data.images, pool.data.images)


def test_reference_data_is_the_control_data_plus_half_the_candidates() -> None:
    sites = {0: labelled(40, 0), 1: labelled(60, 40)}
    pool = CandidatePool.draw(sites, labelled(80, 150), seed=3)
    rest = pool.without_members(sites)
    inside = np.zeros(len(pool.data), bool)
    inside[::2] = True  # 50 of the 100 candidates, members and non-members alike
    rng = np.random.default_rng(0)
    one = pool.with_half(sites, inside, 1, rng)
    assert len(one) == 1 and len(one[0]) == 100  # as many images as the target saw
    assert ids(one[0]) == ids(ImageData.concat(rest)) | ids(pool.data.subset(
        np.flatnonzero(inside)))
    per_site = pool.with_half(sites, inside, 2, rng)
    assert [len(p) for p in per_site] == [len(rest[0]) + 25, len(rest[1]) + 25]
    assert ids(rest[0]) <= ids(per_site[0]) and ids(rest[1]) <= ids(per_site[1])
    assert not ids(ImageData.concat(per_site)) & ids(pool.data.subset(
        np.flatnonzero(~inside)))
    with pytest.raises(ValueError, match="3 parts for 2 sites"):
        pool.with_half(sites, inside, 3, rng)


def test_pool_is_capped_by_the_holdout_and_the_maximum() -> None:
    sites = {0: labelled(400, 0)}
    assert CandidatePool.draw(sites, labelled(30, 500), seed=0).is_member.sum() == 30
    assert CandidatePool.draw(sites, labelled(300, 500), seed=0,
                              max_per_side=25).is_member.sum() == 25
    with pytest.raises(SynthlearnError, match="too few images for a membership audit"):
        CandidatePool.draw({0: labelled(3, 0)}, labelled(1, 10), seed=0)


def test_split_like_sites_keeps_the_class_mix() -> None:
    data = labelled(90, 0, classes=3)
    parts = split_like_sites(data, 3, np.random.default_rng(0))
    assert [len(p) for p in parts] == [30, 30, 30]
    assert all(p.class_counts(3) == [10, 10, 10] for p in parts)
    assert set().union(*(ids(p) for p in parts)) == set(range(90))
