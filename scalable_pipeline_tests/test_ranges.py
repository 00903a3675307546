"""The shuffle's arithmetic, without Dagster: cut points, the split, duplicates and order in a sorted range."""

import numpy as np
import pytest

from scalable_pipeline.decisions.chunk_plan import range_cuts
from scalable_pipeline.decisions.ranges import (
    bounds_problems,
    range_bounds,
    range_split,
    repeats_of_previous,
    unique_ascending_problems,
)

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    "ids",
    [
        np.arange(10**6, 10**6 + 200_000),  # sorted in arrival order (the synthetic source)
        RNG.integers(0, 2**62, 200_000),  # random ids
        np.concatenate([np.arange(200_000), RNG.integers(0, 1_000, 20_000)]),  # late resends of early ids
    ],
)
@pytest.mark.parametrize("count", [1, 2, 7])
def test_cuts_from_a_sample_split_the_hour_into_near_equal_ranges(ids, count):
    cuts = range_cuts(ids[:: max(1, len(ids) // 20_000)].tolist(), count)
    assert list(cuts) == sorted(set(cuts)) and len(cuts) == count - 1
    _, sizes = range_split(ids, cuts, count)
    assert sizes.sum() == len(ids) and sizes.max() <= 1.2 * len(ids) / count


def test_equal_ids_collapse_cuts_and_every_id_has_one_range():
    assert range_cuts([5] * 100, 4) == () and range_cuts([], 3) == ()
    ids = np.array([3, 9, 1, 9, 4, 12])
    order, sizes = range_split(ids, (4, 9), 3)
    assert sizes.tolist() == [2, 1, 3]  # [..4) [4..9) [9..)
    assert ids[order].tolist() == [3, 1, 4, 9, 9, 12]  # grouped by range, stable within a range


def test_repeats_are_the_later_rows_of_an_id():
    assert repeats_of_previous(np.array([1, 1, 2, 3, 3, 3])).tolist() == [False, True, False, False, True, True]
    assert repeats_of_previous(np.array([], dtype=np.int64)).tolist() == []


def test_a_range_holding_foreign_ids_and_an_unsorted_output_are_named():
    assert range_bounds((10, 20), 0) == (None, 10) and range_bounds((10, 20), 2) == (20, None)
    assert bounds_problems(1, (10, 20), 10, 19) == []
    assert bounds_problems(1, (10, 20), 9, 19) == ["range 1 holds order_ids 9..19 outside [10, 20)"]
    assert unique_ascending_problems(np.array([4, 5, 7]), 3) == []
    assert unique_ascending_problems(np.array([4, 4, 3]), None) == [
        "order_id 4 appears more than once",
        "order_id 3 is out of order",
    ]
    assert unique_ascending_problems(np.array([2]), 2) == ["order_id 2 appears more than once"]
