"""The shuffle's arithmetic, without Dagster: cut points, the split, duplicates and order in a sorted range."""

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from scalable_pipeline.checkpoints.checkpoints import ChunkCheckpoints, ChunkTask, RangeTask
from scalable_pipeline.processing import chunk_steps as processed_chunks
from scalable_pipeline.processing.chunk_plan import ChunkPlan, coverage_problems, range_cuts, split_rows
from scalable_pipeline.processing.consolidated_output import ValidPart, combine_valid_parts, summarize_valid
from scalable_pipeline.processing.ranges import (
    MIN_SPLIT_RANGE_ROWS,
    RANGES_PER_INLINE_CHUNK,
    bounds_problems,
    inline_ranges,
    range_bounds,
    range_count,
    range_sources,
    range_split,
    ready_ranges,
    repeats_of_previous,
    unique_ascending_problems,
)
from scalable_pipeline.sources.resource import SyntheticOrderSource

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
    assert ids[order].tolist() == [1, 3, 4, 9, 9, 12]  # sorted by id, so grouped by range
    assert order[3:5].tolist() == [1, 3]  # equal ids keep their raw order (first row first)


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


def test_a_range_reads_only_the_chunks_whose_ids_overlap_it():
    cuts = (100, 200)  # ranges [..100) [100..200) [200..)
    bounds = [(0, 99), (60, 150), (150, 260), None, (1, 0)]  # chunk 3 has no statistics, chunk 4 no rows
    assert range_sources(bounds, cuts) == ((0, 1, 3), (1, 2, 3), (2, 3))
    assert range_sources([(500, 600)], (10, 20)) == ((0,), (0,), (0,))  # no overlap: chunk 0's empty part


def test_chunk_steps_take_local_ranges_only_with_two_chunks_per_slot():
    sources = ((0,), (0, 1), (1, 2, 3), (0, 1, 2, 3))
    assert inline_ranges(sources, chunk_count=4, parallel_tasks=2) == (0, 1, 2)  # range 3 has 4 sources
    assert inline_ranges(sources, chunk_count=3, parallel_tasks=2) == ()  # the last chunk would do them alone


def test_plans_whose_chunk_steps_process_the_ranges_cut_several_ranges_per_chunk():
    big = 4 * RANGES_PER_INLINE_CHUNK * MIN_SPLIT_RANGE_ROWS  # chunks big enough for every range split
    assert range_count(big, chunk_count=4, parallel_tasks=2) == 4 * RANGES_PER_INLINE_CHUNK > 4  # two waves: inline
    assert range_count(10 * big, chunk_count=4, parallel_tasks=2) == 4 * RANGES_PER_INLINE_CHUNK  # at most four each
    assert range_count(big // 2, chunk_count=4, parallel_tasks=2) == 4 * RANGES_PER_INLINE_CHUNK // 2  # no tiny ranges
    assert range_count(10_000, chunk_count=4, parallel_tasks=2) == 4  # a small hour: one range per chunk
    assert range_count(big, chunk_count=3, parallel_tasks=2) == 3  # one wave: one range step per range


class WritingCheckpoints:
    """Records the ranges saved; fails the write of range ``fail_on``."""

    def __init__(self, fail_on: int | None = None):
        self.fail_on, self.saved = fail_on, []

    def read_range_parts(self, task):
        return task.index

    def save_range(self, task, *_judged):
        if task.index == self.fail_on:
            raise OSError(f"disk full writing range {task.index}")
        self.saved.append(task.index)
        return task.index


def test_a_chunk_step_judges_and_saves_two_ranges_at_once(monkeypatch):
    tasks = [RangeTask("2026-01-05-10:00", "plan", index, (0,), "raw.parquet") for index in range(3)]
    both = threading.Barrier(processed_chunks.RANGE_THREADS, timeout=20)  # broken unless two ranges are judged at once

    def judge(parts, task):
        if task.index < processed_chunks.RANGE_THREADS:
            both.wait()
        return None, None, parts

    monkeypatch.setattr(processed_chunks, "judge_range", judge)
    checkpoints = WritingCheckpoints()
    assert processed_chunks.judge_and_save_ranges(checkpoints, tasks) == [0, 1, 2]  # results in range order
    assert sorted(checkpoints.saved) == [0, 1, 2]

    failing = WritingCheckpoints(fail_on=1)
    both.reset()
    with pytest.raises(OSError, match="range 1"):  # a failed write fails the step
        processed_chunks.judge_and_save_ranges(failing, tasks)
    assert 1 not in failing.saved


def test_a_range_is_ready_for_the_chunk_that_completes_its_sources():
    sources = {0: (0,), 1: (0, 1), 2: (1, 2)}
    assert ready_ranges(0, sources, done=set()) == [0]
    assert ready_ranges(1, sources, done=set()) == []  # chunk 0 not done yet
    assert ready_ranges(1, sources, done={0, 2}) == [1, 2]


def test_chunk_boundaries_fall_on_row_groups_when_each_chunk_gets_one():
    chunks = split_rows(501_345, 4, align=50_000)
    assert [c.start_row for c in chunks] == [0, 100_000, 250_000, 350_000] and chunks[-1].stop_row == 501_345
    assert coverage_problems(ChunkPlan("p", "v", "path", 501_345, chunks)) == []
    assert split_rows(100, 3, align=50_000) == split_rows(100, 3)  # groups larger than chunks: not aligned


def test_output_parts_must_ascend_across_part_boundaries(tmp_path):
    def part(name: str, ids: list[int]) -> ValidPart:
        path = tmp_path / f"{name}.parquet"
        table = pa.table({"order_id": ids, "region": ["EU"] * len(ids), "amount": [1.0] * len(ids)})
        pq.write_table(table, path)
        return summarize_valid(path)

    first, second, overlapping = part("a", [1, 2, 5]), part("b", [6, 9]), part("c", [5, 7])
    assert combine_valid_parts([first, second]) == (5, 5.0, {"EU": [5, 5.0]}, [])
    assert combine_valid_parts([first, overlapping])[3] == ["order_id 5 appears more than once"]
    assert combine_valid_parts([second, first])[3] == ["order_id 1 is out of order"]


def test_a_chunk_step_writes_no_shuffle_file_for_the_ranges_it_alone_feeds(tmp_path):
    """Ranges fed only by this chunk are judged from memory and checkpointed before the chunk's summary; a done
    chunk whose unwritten part's range is gone is computed again (nothing a later range needs is lost)."""
    hour = pd.Timestamp("2026-01-05 10:00", tz="UTC")
    raw = pa.Table.from_pandas(pd.concat(SyntheticOrderSource(scale=2).iter_hour(hour)), preserve_index=False)
    raw_path = tmp_path / "raw.parquet"
    pq.write_table(raw, raw_path, row_group_size=5_000)
    cuts = range_cuts(raw["order_id"].to_numpy(), 3)
    tasks = [RangeTask("2026-01-05-10:00", "plan", r, (0,) if r < 2 else (0, 1), str(raw_path)) for r in range(3)]
    chunk = ChunkTask("2026-01-05-10:00", "plan", str(raw_path), 0, 0, len(raw), cuts, tuple(tasks))
    checkpoints = ChunkCheckpoints(tmp_path / "data")

    result, own = processed_chunks.shuffle_chunk(checkpoints, chunk)
    assert [r.index for r in own] == [0, 1] and sum(r.rows_in for r in own) + result.range_rows[2] == len(raw)
    written = {r for r in range(3) if checkpoints.shuffle_file("2026-01-05-10:00", "plan", 0, r).exists()}
    assert written == {2}  # only the part range 2 also needs from chunk 1
    assert feather.read_table(checkpoints.shuffle_file("2026-01-05-10:00", "plan", 0, 2)).num_rows == result.range_rows[2]
    assert checkpoints.load_chunk(chunk) is not None and processed_chunks.shuffle_chunk(checkpoints, chunk)[1] == []

    Path(own[1].valid_path).unlink()  # range 1's output lost: its rows exist nowhere else
    assert checkpoints.load_chunk(chunk) is None
    rerun, redone = processed_chunks.shuffle_chunk(checkpoints, chunk)
    assert (
        rerun.range_rows == result.range_rows
        and [r.index for r in redone] == [1]
        and (redone[0].rows_in, redone[0].valid) == (own[1].rows_in, own[1].valid)
    )
