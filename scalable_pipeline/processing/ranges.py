"""The shuffle's arithmetic: split a chunk's rows by order_id range; de-duplicate a range sorted by id.

The rules stay those of ``order_rules``: de-duplication before validity, first row in raw order wins.
A range holds every row of its ids from every chunk, so sorting it by (order_id, raw row) and marking
each row whose id equals the previous row's finds exactly the whole hour's duplicates.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from scalable_pipeline.scaling.decision import ranges_inline


def range_split(order_ids: np.ndarray, cuts: Sequence[int], range_count: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable order by order_id (so rows come grouped by range, each range sorted by id, then raw row), and
    the row count of each range (``range_count`` of them)."""
    order = np.argsort(order_ids, kind="stable")
    bounds = np.searchsorted(order_ids[order], np.asarray(cuts, dtype=np.int64), side="left")  # a cut opens its range
    counts = np.diff(np.concatenate([[0], bounds, [len(order_ids)]]))
    return order, np.pad(counts, (0, range_count - len(counts)))


def repeats_of_previous(sorted_order_ids: np.ndarray) -> np.ndarray:
    """True for each row whose order_id equals the previous row's (input sorted by id, then raw row)."""
    repeated = np.zeros(len(sorted_order_ids), dtype=bool)
    repeated[1:] = sorted_order_ids[1:] == sorted_order_ids[:-1]
    return repeated


# A chunk step processes a range itself, as soon as the range's sources are done, only when the range comes
# from at most this many chunks (ids arriving roughly in order): otherwise the last chunk to finish would
# do every range alone, and the range fan-out runs them in parallel instead.
LOCAL_SOURCES = 3


# When chunk steps process the ranges, each chunk's share of the ids is cut into up to this many ranges of at
# least MIN_SPLIT_RANGE_ROWS: a step judges and saves two ranges at once (chunk_steps.RANGE_THREADS), each a
# fraction of its chunk (smaller ranges would only add files and per-range costs).
RANGES_PER_INLINE_CHUNK = 4
MIN_SPLIT_RANGE_ROWS = 250_000


def range_count(total_records: int, chunk_count: int, parallel_tasks: int) -> int:
    """How many order_id ranges a plan of ``chunk_count`` chunks over ``parallel_tasks`` slots cuts the hour
    into: one per chunk for a range fan-out (one step each), up to four per chunk when chunk steps process them."""
    if not ranges_inline(chunk_count, parallel_tasks):
        return chunk_count
    per_chunk = total_records // max(1, chunk_count) // MIN_SPLIT_RANGE_ROWS
    return chunk_count * min(RANGES_PER_INLINE_CHUNK, max(1, per_chunk))


def range_sources(chunk_id_bounds: Sequence[tuple[int, int] | None], cuts: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """For each order_id range, the chunks that may hold its ids: those whose [min, max] order_id (from the
    raw Parquet statistics) overlaps it. A chunk without statistics (None) may hold any id; one with min > max
    holds no rows. A range no chunk
    overlaps reads chunk 0's (empty) part, so that it still has its columns."""
    sources = []
    for index in range(len(cuts) + 1):
        low, high = range_bounds(cuts, index)
        sources.append(
            tuple(
                chunk
                for chunk, bounds in enumerate(chunk_id_bounds)
                if bounds is None
                or (bounds[0] <= bounds[1] and (low is None or bounds[1] >= low) and (high is None or bounds[0] < high))
            )
            or (0,)
        )
    return tuple(sources)


def inline_ranges(sources: Sequence[Sequence[int]], chunk_count: int, parallel_tasks: int) -> tuple[int, ...]:
    """The ranges chunk steps process themselves: those with at most ``LOCAL_SOURCES`` source chunks, when
    the plan has ``INLINE_WAVES`` waves or more (``ranges_inline``)."""
    if not ranges_inline(chunk_count, parallel_tasks):
        return ()
    return tuple(index for index, chunks in enumerate(sources) if len(chunks) <= LOCAL_SOURCES)


def ready_ranges(chunk: int, sources: Mapping[int, Sequence[int]], done: set[int]) -> list[int]:
    """Of the ranges in ``sources`` (range -> its source chunks), those fed by ``chunk`` whose every source
    chunk is done once ``chunk`` is."""
    return [r for r, chunks in sources.items() if chunk in chunks and set(chunks) <= done | {chunk}]


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
