"""The scaling decision (pure, without Dagster): the seed table, its fixed defects, the memory bound,
worker slots; and reading the chunk pool's limit from an instance."""

import math

import dagster as dg
import pytest

from scalable_pipeline.decisions.chunk_plan import ChunkPlan, coverage_problems, split_rows
from scalable_pipeline.decisions.scaling import (
    CHUNK_MEMORY_OVERHEAD,
    ResourceSnapshot,
    ScalingLimits,
    decide_strategy,
    processing_mode,
    worker_slots,
)
from scalable_pipeline.resources.scaling import ScalingResource, chunk_pool_limit

GIB = 1024**3


def snapshot(cpu=10.0, memory=20.0, workers=16, queue=0, total_memory=16 * GIB):
    return ResourceSnapshot(cpu, memory, total_memory, workers, queue)


@pytest.mark.parametrize(
    "cpu, workers, mode",
    [
        (10, 16, "aggressive"),
        (49.9, 9, "aggressive"),
        (50, 16, "moderate"),  # the boundaries are strict, as in the seed rule
        (10, 8, "moderate"),
        (69.9, 5, "moderate"),
        (70, 16, "conservative"),
        (10, 4, "conservative"),
        (95, 64, "conservative"),
        (0, 0, "conservative"),
    ],
)
def test_seed_table(cpu, workers, mode):
    assert processing_mode(cpu, workers) == mode


@pytest.mark.parametrize("total", [0, 1, 7, 999, 1_000, 1_001, 11_141, 1_114_100])
@pytest.mark.parametrize("workers", [0, 1, 2, 5, 9, 32])
def test_chunks_cover_every_record_for_any_volume_and_workers(total, workers):
    strategy = decide_strategy(total, snapshot(workers=workers), bytes_per_record=60)
    assert strategy.parallel_tasks >= 1 and strategy.batch_size >= 1 and strategy.chunk_count >= 1
    assert strategy.chunk_count * strategy.batch_size >= total  # no records left uncovered (ceil, not floor)
    chunks = split_rows(total, strategy.chunk_count)
    assert coverage_problems(ChunkPlan("p", "v", "path", total, chunks)) == []
    assert max(c.rows for c in chunks) <= strategy.batch_size


def test_empty_hour_gets_one_empty_chunk():
    strategy = decide_strategy(0, snapshot(workers=0), bytes_per_record=0)
    assert strategy.chunk_count == 1
    assert split_rows(0, strategy.chunk_count)[0].rows == 0


def test_aggressive_spreads_one_wave_over_all_workers():
    strategy = decide_strategy(160_000, snapshot(cpu=10, workers=16), bytes_per_record=60)
    assert (strategy.processing_mode, strategy.parallel_tasks) == ("aggressive", 16)
    assert strategy.batch_size == 10_000 and strategy.chunk_count == 16


def test_busier_machine_runs_fewer_tasks():
    calm = decide_strategy(160_000, snapshot(cpu=10, workers=16), 60)
    busy = decide_strategy(160_000, snapshot(cpu=60, workers=16), 60)
    loaded = decide_strategy(160_000, snapshot(cpu=90, workers=16), 60)
    assert calm.parallel_tasks > busy.parallel_tasks > loaded.parallel_tasks >= 1


def test_queued_runs_share_the_workers():
    alone = decide_strategy(160_000, snapshot(workers=16, queue=0), 60)
    shared = decide_strategy(160_000, snapshot(workers=16, queue=3), 60)
    assert shared.parallel_tasks < alone.parallel_tasks


def test_memory_bounds_the_batch_size():
    # 256 MiB total, 90% used: ~25 MiB free, half of it budgeted, over the parallel tasks.
    tight = snapshot(memory=90.0, total_memory=GIB // 4, workers=2, cpu=90)
    strategy = decide_strategy(2_000_000, tight, bytes_per_record=100)
    free = GIB / 4 * 0.10
    expected_rows = int(free * 0.5 / strategy.parallel_tasks // (100 * CHUNK_MEMORY_OVERHEAD))
    assert strategy.memory_bound_rows == expected_rows
    assert strategy.batch_size == expected_rows
    assert strategy.reason == "bounded by free memory"
    assert strategy.chunk_count == math.ceil(2_000_000 / expected_rows)


def test_memory_bound_wins_over_the_chunk_cap():
    tight = snapshot(memory=90.0, total_memory=GIB // 4, workers=2, cpu=90)
    strategy = decide_strategy(20_000_000, tight, 100, ScalingLimits(max_chunks=256))
    assert strategy.chunk_count > 256 and strategy.batch_size == strategy.memory_bound_rows


def test_full_memory_still_makes_progress():
    strategy = decide_strategy(50, snapshot(memory=100.0), bytes_per_record=100)
    assert strategy.batch_size == 1 and strategy.chunk_count == 50


def test_limits_clamp_the_batch_and_the_number_of_chunks():
    limits = ScalingLimits(min_batch_size=1_000, max_batch_size=5_000, max_chunks=10)
    small = decide_strategy(1_500, snapshot(workers=16), 60, limits)
    assert small.batch_size == 1_000 and small.chunk_count == 2
    big = decide_strategy(1_000_000, snapshot(workers=16), 60, limits)
    assert big.chunk_count == 10 and big.batch_size == 100_000  # the chunk cap wins over max_batch_size


@pytest.mark.parametrize(
    "total, pinned, chunks", [(11_141, 17, 17), (100, 40, 40), (2_000, 600, 600), (10, 6, 6), (3, 8, 3), (0, 5, 1)]
)
def test_pinned_chunk_count_is_honoured(total, pinned, chunks):
    strategy = decide_strategy(total, snapshot(workers=2), 60, ScalingLimits(pinned_chunk_count=pinned))
    assert strategy.chunk_count == chunks  # never more chunks than records, at least one
    planned = split_rows(total, strategy.chunk_count)
    assert len(planned) == chunks and max(c.rows for c in planned) <= strategy.batch_size


def test_coverage_problems_are_named():
    plan = ChunkPlan("p", "v", "path", 10, split_rows(12, 3))
    assert coverage_problems(plan) == ["chunks end at row 12, the hour has 10"]
    gap = ChunkPlan("p", "v", "path", 10, (split_rows(10, 2)[0], split_rows(10, 2)[1].__class__(1, 6, 10)))
    assert coverage_problems(gap) == ["chunk 1 starts at row 6, expected 5"]


def test_fingerprint_changes_with_content_boundaries_and_rules_version(monkeypatch):
    import scalable_pipeline.decisions.chunk_plan as chunk_plan_module

    plan = ChunkPlan("p", "v1", "path", 10, split_rows(10, 2), raw_digest="abc")
    same_content_new_version = ChunkPlan("p", "v2", "other", 10, split_rows(10, 2), raw_digest="abc")
    assert plan.fingerprint == same_content_new_version.fingerprint  # a re-fetch of the same bytes reuses checkpoints
    assert plan.fingerprint != ChunkPlan("p", "v1", "path", 10, split_rows(10, 3), raw_digest="abc").fingerprint
    assert plan.fingerprint != ChunkPlan("p", "v1", "path", 10, split_rows(10, 2), raw_digest="abd").fingerprint
    before = plan.fingerprint
    monkeypatch.setattr(chunk_plan_module, "RULES_VERSION", chunk_plan_module.RULES_VERSION + 1)
    assert plan.fingerprint != before


@pytest.mark.parametrize(
    "executor, max_concurrent, pool_limit, slots",
    [
        ("execute_in_process_executor", 8, None, 1),
        ("multiprocess", None, None, 6),  # the CPU count
        ("multiprocess", 4, None, 4),
        ("multiprocess", 4, 2, 2),  # the chunk pool caps the executor
        ("multiprocess", None, 10, 6),
        ("multiprocess", None, 0, 0),  # a closed pool: conservative, one task, as decide_strategy floors it
    ],
)
def test_worker_slots_from_executor_and_pool(executor, max_concurrent, pool_limit, slots):
    assert worker_slots(executor, max_concurrent, 6, pool_limit) == slots


def test_measured_worker_slots_read_the_chunk_pool_limit():
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 3}}}) as instance:
        assert chunk_pool_limit(instance) == 3
        instance.event_log_storage.set_concurrency_slots("chunk_processing", 2)
        assert chunk_pool_limit(instance) == 2
    with dg.instance_for_test() as instance:
        assert chunk_pool_limit(instance) is None


def test_scaling_resource_defaults_are_the_decisions_defaults():
    assert ScalingResource().limits == ScalingLimits()
    assert ScalingResource(max_chunks=7, chunk_count=3).limits == ScalingLimits(max_chunks=7, pinned_chunk_count=3)
