"""The shuffle's arithmetic: split a chunk's rows by order_id range; de-duplicate a range sorted by id.

The rules stay those of ``order_rules``: de-duplication before validity, first row in raw order wins.
A range holds every row of its ids from every chunk, so sorting it by (order_id, raw row) and marking
each row whose id equals the previous row's finds exactly the whole hour's duplicates.
"""

from collections.abc import Sequence

import numpy as np


def range_split(order_ids: np.ndarray, cuts: Sequence[int], range_count: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable order that groups rows by range, and the row count of each range (``range_count`` of them)."""
    ranges = np.searchsorted(np.asarray(cuts, dtype=np.int64), order_ids, side="right")
    return np.argsort(ranges, kind="stable"), np.bincount(ranges, minlength=range_count)


def repeats_of_previous(sorted_order_ids: np.ndarray) -> np.ndarray:
    """True for each row whose order_id equals the previous row's (input sorted by id, then raw row)."""
    repeated = np.zeros(len(sorted_order_ids), dtype=bool)
    repeated[1:] = sorted_order_ids[1:] == sorted_order_ids[:-1]
    return repeated


def range_bounds(cuts: Sequence[int], index: int) -> tuple[int | None, int | None]:
    """``[low, high)`` of range ``index`` (None: open-ended)."""
    return (cuts[index - 1] if index > 0 else None, cuts[index] if index < len(cuts) else None)


def bounds_problems(index: int, cuts: Sequence[int], min_id: int | None, max_id: int | None) -> list[str]:
    """Ids of range ``index`` outside its bounds (empty when it holds only its own ids)."""
    low, high = range_bounds(cuts, index)
    if min_id is None or max_id is None:
        return []
    if (low is not None and min_id < low) or (high is not None and max_id >= high):
        return [f"range {index} holds order_ids {min_id}..{max_id} outside [{low}, {high})"]
    return []


def unique_ascending_problems(ids: np.ndarray, previous: int | None) -> list[str]:
    """Ids that repeat or go backwards in a part that should continue ascending after ``previous``."""
    ids = ids if previous is None else np.concatenate([[previous], ids])
    steps = np.diff(ids)
    return [
        f"order_id {ids[i + 1]} appears more than once" if steps[i] == 0 else f"order_id {ids[i + 1]} is out of order"
        for i in np.flatnonzero(steps <= 0)[:10]
    ]
