"""The scaling decision (pure, without Dagster): the seed table, its fixed defects, the memory bound,
worker slots, every slot on a free machine, chunk sizes within the overhead budget (converging over runs),
the cost choice; and reading the chunk pool's limit from an instance."""

import dataclasses
import math

import dagster as dg
import pytest

from scalable_pipeline.processing import chunk_plan as chunk_plan_module
from scalable_pipeline.processing.chunk_plan import ChunkPlan, coverage_problems, split_rows
from scalable_pipeline.scaling.decision import (
    CHUNK_MEMORY_OVERHEAD,
    DEFAULT_STEP_OVERHEAD_SECONDS,
    DEFAULT_THROUGHPUT_RECORDS_PER_SECOND,
    INLINE_WAVES,
    CostTarget,
    ExecutionProfile,
    ResourceSnapshot,
    ScalingLimits,
    decide_strategy,
    estimate_run,
    execution_profile,
    executor_kind,
    executor_mode,
    processing_mode,
    smallest_efficient_chunk,
    worker_slots,
)
from scalable_pipeline.scaling.resource import ScalingResource, chunk_pool_limit

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


def test_aggressive_spreads_two_waves_over_all_workers():
    strategy = decide_strategy(160_000, snapshot(cpu=10, workers=16), bytes_per_record=60)
    assert (strategy.processing_mode, strategy.parallel_tasks) == ("aggressive", 16)
    assert strategy.batch_size == 5_000 and strategy.chunk_count == 32  # two waves: the chunk steps do the ranges


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
    # 256 MiB total, 90% used: ~25 MiB free, half of it budgeted, over the 2 worker slots (the executor may
    # run a chunk in each even when the busy machine plans 1 parallel task).
    tight = snapshot(memory=90.0, total_memory=GIB // 4, workers=2, cpu=90)
    strategy = decide_strategy(2_000_000, tight, bytes_per_record=100)
    assert strategy.parallel_tasks == 1
    free = GIB / 4 * 0.10
    expected_rows = int(free * 0.5 / 2 // (100 * CHUNK_MEMORY_OVERHEAD))
    assert strategy.memory_bound_rows == expected_rows
    assert strategy.reason == "bounded by free memory"
    assert strategy.chunk_count == math.ceil(2_000_000 / expected_rows)
    assert strategy.batch_size == math.ceil(2_000_000 / strategy.chunk_count) <= expected_rows


def test_memory_bound_wins_over_the_chunk_cap():
    tight = snapshot(memory=90.0, total_memory=GIB // 4, workers=2, cpu=90)
    strategy = decide_strategy(20_000_000, tight, 100, ScalingLimits(max_chunks=256))
    assert strategy.chunk_count == math.ceil(20_000_000 / strategy.memory_bound_rows) > 256
    assert strategy.batch_size <= strategy.memory_bound_rows and strategy.reason == "bounded by free memory"


def test_full_memory_still_makes_progress():
    strategy = decide_strategy(50, snapshot(memory=100.0), bytes_per_record=100)
    assert strategy.batch_size == 1 and strategy.chunk_count == 50


def test_limits_clamp_the_batch_and_the_number_of_chunks():
    limits = ScalingLimits(min_batch_size=1_000, max_batch_size=5_000, max_chunks=10)
    small = decide_strategy(1_500, snapshot(workers=16), 60, limits)
    assert small.chunk_count == 1 and small.batch_size == 1_500  # two chunks would hold 750 rows each
    assert "min_batch_size" in small.reason
    big = decide_strategy(1_000_000, snapshot(workers=16), 60, limits)
    assert big.chunk_count == 10 and big.batch_size == 100_000  # the chunk cap wins over max_batch_size
    capped = decide_strategy(1_000_000, snapshot(workers=16), 60, ScalingLimits(max_batch_size=5_000))
    assert capped.chunk_count == 208 and capped.batch_size <= 5_000  # whole waves: 13 of 16
    assert capped.reason == "capped at max_batch_size (5,000 rows)"


@pytest.mark.parametrize(
    "total, pinned, chunks", [(11_141, 17, 17), (100, 40, 40), (2_000, 600, 600), (10, 6, 6), (3, 8, 3), (0, 5, 1)]
)
def test_pinned_chunk_count_is_honoured(total, pinned, chunks):
    strategy = decide_strategy(total, snapshot(workers=2), 60, ScalingLimits(chunk_count=pinned))
    assert strategy.chunk_count == chunks  # never more chunks than records, at least one
    planned = split_rows(total, strategy.chunk_count)
    assert len(planned) == chunks and max(c.rows for c in planned) <= strategy.batch_size


def test_coverage_problems_are_named():
    plan = ChunkPlan("p", "v", "path", 10, split_rows(12, 3))
    assert coverage_problems(plan) == ["chunks end at row 12, the hour has 10"]
    gap = ChunkPlan("p", "v", "path", 10, (split_rows(10, 2)[0], split_rows(10, 2)[1].__class__(1, 6, 10)))
    assert coverage_problems(gap) == ["chunk 1 starts at row 6, expected 5"]


def test_fingerprint_changes_with_content_boundaries_and_rules_version(monkeypatch):
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


@pytest.mark.parametrize("dataclass_type", [ScalingLimits, CostTarget])
def test_scaling_resource_fields_are_the_decisions_fields_with_their_defaults(dataclass_type):
    for field in dataclasses.fields(dataclass_type):
        assert ScalingResource.model_fields[field.name].default == field.default, field.name
    assert ScalingResource().limits == ScalingLimits() and ScalingResource().cost == CostTarget()
    assert ScalingResource(max_chunks=7, chunk_count=3).limits == ScalingLimits(max_chunks=7, chunk_count=3)
    assert ScalingResource(deadline_seconds=60).cost == CostTarget(deadline_seconds=60)


# --- Use the cores there are: every slot while the machine is free, the seed mode's share when it is busy.


@pytest.mark.parametrize(
    "cpu, memory, workers, tasks",
    [
        (10, 20, 2, 2),  # idle 2-core machine: two chunk steps at once (the seed rule gave 1)
        (49.9, 79.9, 2, 2),
        (50, 20, 2, 1),  # busy CPU: conservative, a quarter of 2, at least 1
        (10, 80, 2, 1),  # busy memory
        (10, 20, 8, 8),  # the seed table says moderate (not > 8 workers), but nothing competes
        (60, 20, 8, 4),  # busy: moderate's half
        (90, 20, 16, 4),  # busy: conservative's quarter
    ],
)
def test_every_worker_slot_when_free_the_modes_share_when_busy(cpu, memory, workers, tasks):
    strategy = decide_strategy(50_000_000, snapshot(cpu=cpu, memory=memory, workers=workers), 60)
    assert strategy.parallel_tasks == tasks
    assert strategy.processing_mode == processing_mode(cpu, workers)  # the mode itself is still the seed table's


def test_idle_two_core_machine_runs_two_chunks_at_once():
    strategy = decide_strategy(1_114_100, snapshot(cpu=10, memory=10, workers=2), 36.5, profile=MULTIPROCESS)
    assert strategy.processing_mode == "conservative" and strategy.parallel_tasks == 2
    assert strategy.chunk_count == 4  # two waves, both slots busy in each
    busy = decide_strategy(1_114_100, snapshot(cpu=75, memory=10, workers=2), 36.5, profile=MULTIPROCESS)
    assert busy.parallel_tasks == 1 and busy.chunk_count == 2


# --- Chunk sizes: whole waves, each chunk the smallest that keeps the step overhead within the budget.

IN_PROCESS = execution_profile("in_process", [0.15], [3_000_000])
MULTIPROCESS = execution_profile("multiprocess", [1.0], [3_000_000])


def test_profile_is_the_median_of_history_else_safe_defaults():
    assert execution_profile("in_process", [], []) == ExecutionProfile(
        "in_process",
        DEFAULT_STEP_OVERHEAD_SECONDS["in_process"],
        "default for in_process (no history)",
        DEFAULT_THROUGHPUT_RECORDS_PER_SECOND,
        "default (no history)",
    )
    assert execution_profile("celery", [], []).step_overhead_seconds == DEFAULT_STEP_OVERHEAD_SECONDS["multiprocess"]
    measured = execution_profile("multiprocess", [0.9, 1.3, 1.0], [2e6, 4e6])
    assert (measured.step_overhead_seconds, measured.throughput_records_per_second) == (1.0, 3e6)
    assert measured.step_overhead_source == "history: median of 3 run(s)"
    assert measured.throughput_source == "history: median of 2 run(s)"
    assert executor_kind("execute_in_process_executor") == "in_process" and executor_kind("multiprocess") == "multiprocess"
    assert executor_kind("auto", "multiprocess") == "multiprocess" and executor_kind("auto", "in_process") == "in_process"


@pytest.mark.parametrize(("cpus", "mode"), [(1, "in_process"), (2, "in_process"), (2.5, "multiprocess"), (8, "multiprocess")])
def test_a_process_per_step_only_where_the_machine_has_more_cores_than_a_chunk_step_uses(cpus, mode):
    assert executor_mode(cpus) == mode


def test_smallest_efficient_chunk_spends_exactly_the_overhead_budget():
    rows = smallest_efficient_chunk(IN_PROCESS, 0.10)
    # one step per chunk (its ranges processed in it) x 0.15 s x 3M records/s x 9: 1.35 s of compute per 0.15 s
    assert rows == 4_050_000
    assert estimate_run(2 * rows, 2, 1, IN_PROCESS).overhead_share == pytest.approx(0.10)
    # one chunk alone cannot process its ranges in its own step: a range step follows, twice the overhead
    assert estimate_run(rows, 1, 1, IN_PROCESS).overhead_share == pytest.approx(0.3 / (0.3 + 1.35))


@pytest.mark.parametrize("tasks", [1, 2, 3, 8])
@pytest.mark.parametrize("total", [9_000_000, 11_141_000, 33_423_000, 50_000_000])
def test_chunks_are_whole_waves_of_the_smallest_chunks_within_the_overhead_budget(tasks, total):
    profile = execution_profile("multiprocess", [0.05], [3_000_000])  # 1.35M rows per chunk for 10%
    limits = ScalingLimits(max_batch_size=10**9)
    strategy = decide_strategy(total, snapshot(workers=tasks), 36.5, limits, profile)
    assert strategy.parallel_tasks == tasks and strategy.chunk_count % tasks == 0  # every slot busy in every wave
    if total < INLINE_WAVES * tasks * smallest_efficient_chunk(profile, 0.10):
        # two waves, the ranges in them: as few steps as one wave and its range steps, the best there is
        assert strategy.chunk_count == INLINE_WAVES * tasks and strategy.expected_overhead_share > 0.10
    else:
        assert strategy.expected_overhead_share <= 0.10
        one_more_wave = estimate_run(total, strategy.chunk_count + tasks, tasks, profile)
        assert one_more_wave.overhead_share > 0.10  # smaller chunks would exceed the budget: these are the smallest
    assert strategy.expected_overhead_share == pytest.approx(
        estimate_run(total, strategy.chunk_count, tasks, profile).overhead_share
    )


def test_chunk_size_stays_flat_as_the_hour_grows():
    sizes = [decide_strategy(n, snapshot(workers=1), 36.5, ScalingLimits(), IN_PROCESS).batch_size for n in (11e6, 33e6, 100e6)]
    target = min(smallest_efficient_chunk(IN_PROCESS, 0.10), ScalingLimits().max_batch_size)
    assert all(target <= size < 1.5 * target for size in sizes)  # memory per step does not follow the hour's size


def test_too_small_an_hour_gets_two_waves_and_says_the_budget_is_missed():
    strategy = decide_strategy(1_114_100, snapshot(workers=2), 36.5, ScalingLimits(), MULTIPROCESS)
    assert strategy.chunk_count == 4 and strategy.expected_overhead_share > 0.10
    assert strategy.reason == "4 chunks in 2 waves of 2: too few records to keep overhead <= 10%"
    # the same steps as one wave and its range steps, without writing and re-reading the hour's shuffle
    one_wave = estimate_run(1_114_100, 2, 2, MULTIPROCESS)
    assert strategy.expected_overhead_share == pytest.approx(one_wave.overhead_share, rel=1e-3)


def test_overhead_share_converges_over_a_sequence_of_runs():
    """A machine whose true costs differ from the defaults: each run records what it measured, the next
    plans from the history; the true overhead share falls within the budget and the plan settles."""
    total = 11_141_000
    true_profile = execution_profile("in_process", [0.15], [3_000_000])
    overheads: list[float] = []
    throughputs: list[float] = []
    counts, true_shares, expected_shares = [], [], []
    for run in range(5):
        profile = execution_profile("in_process", overheads, throughputs)
        strategy = decide_strategy(total, snapshot(workers=1), 36.5, ScalingLimits(max_batch_size=10**8), profile)
        counts.append(strategy.chunk_count)
        expected_shares.append(strategy.expected_overhead_share)
        true_shares.append(estimate_run(total, strategy.chunk_count, 1, true_profile).overhead_share)
        noise = 1 + 0.05 * (-1) ** run  # what a run measures wobbles around the truth
        overheads.append(0.15 * noise)
        throughputs.append(3_000_000 / noise)
    assert counts[0] == 8  # defaults (1M records/s): chunks of 1.35M+ rows ...
    assert true_shares[0] > 0.20  # ... but the machine computes 3x faster: a quarter of the run is overhead
    assert counts[1:] == [2, 2, 2, 2]  # the optimum for 0.15 s and 3M records/s (chunks of >= 4.05M rows)
    assert all(share <= 0.10 for share in true_shares[1:] + expected_shares)


def test_a_faster_executor_measured_in_history_gets_more_smaller_chunks():
    total = 11_141_000
    first = decide_strategy(total, snapshot(workers=2), 36.5, profile=execution_profile("multiprocess", [], [3e6]))
    tuned = decide_strategy(total, snapshot(workers=2), 36.5, profile=execution_profile("multiprocess", [0.05], [3e6]))
    assert (first.chunk_count, tuned.chunk_count) == (4, 8)  # 1 s default per step: two waves; 0.05 s measured: four
    assert first.expected_overhead_share > 0.10 >= tuned.expected_overhead_share


# --- Cost: the cheapest parallelism that meets the deadline, else the fastest.

SLOW = execution_profile("multiprocess", [0.5], [1_000_000])  # 1 s of overhead per chunk: two steps of 0.5 s


def estimates_by_workers(total, workers):
    return {
        w: decide_strategy(total, snapshot(workers=workers), 36.5, ScalingLimits(), SLOW, CostTarget(deadline_seconds=1e9))
        for w in range(1, workers + 1)
    }


def test_cheapest_parallelism_that_meets_the_deadline():
    total = 8_000_000  # 1M records/s per worker: 8 s of compute
    cost = CostTarget(cost_per_worker_hour=3.6, deadline_seconds=3.5)
    strategy = decide_strategy(total, snapshot(workers=8), 36.5, ScalingLimits(), SLOW, cost)
    # two waves of w chunks, the ranges in them: 2 x 0.5 s + 8/w s -> 1 worker 9 s, 2 workers 5 s, 3 workers 3.67 s,
    # 4 workers 3 s
    assert strategy.parallel_tasks == 4 and strategy.chunk_count == 8
    assert strategy.estimated_seconds == pytest.approx(3.0)
    assert strategy.estimated_cost == pytest.approx(3.6 * 4 * 3.0 / 3600)
    assert strategy.cost_choice == "4 of 8 worker(s): the cheapest that meets the 3.5 s deadline (est. 3.0 s)"
    faster = decide_strategy(total, snapshot(workers=8), 36.5, ScalingLimits(), SLOW, CostTarget(deadline_seconds=2.5))
    assert faster.parallel_tasks == 6  # 1 + 8/6 = 2.33 s; 5 workers need 2.6 s


def test_no_parallelism_meets_the_deadline_takes_the_fastest_and_says_so():
    strategy = decide_strategy(8_000_000, snapshot(workers=8), 36.5, ScalingLimits(), SLOW, CostTarget(deadline_seconds=1.5))
    assert strategy.parallel_tasks == 8 and strategy.estimated_seconds == pytest.approx(2.0)
    assert strategy.cost_choice == "no parallelism meets the 1.5 s deadline: the fastest, 8 worker(s), est. 2.0 s"
    assert strategy.estimated_cost is None  # no price given


def test_price_without_deadline_is_the_cheapest_and_nothing_set_uses_every_task():
    priced = decide_strategy(8_000_000, snapshot(workers=8), 36.5, ScalingLimits(), SLOW, CostTarget(cost_per_worker_hour=1.0))
    assert priced.parallel_tasks == 1 and priced.cost_choice.startswith("no deadline_seconds set: the cheapest, 1 worker(s)")
    assert priced.estimated_cost == pytest.approx(priced.estimated_seconds / 3600)
    unset = decide_strategy(8_000_000, snapshot(workers=8), 36.5, ScalingLimits(), SLOW)
    assert unset.parallel_tasks == 8 and unset.estimated_cost is None
    assert unset.cost_choice == "no cost_per_worker_hour or deadline_seconds set: all 8 parallel task(s)"


def test_metadata_names_what_was_chosen_and_assumed():
    strategy = decide_strategy(11_141_000, snapshot(workers=1), 36.5, ScalingLimits(), IN_PROCESS)
    metadata = strategy.as_metadata()
    assert metadata == {
        "parallel_tasks": 1,
        "batch_size": 5_570_500,
        "processing_mode": "conservative",
        "chunk_count": 2,
        "strategy_reason": "2 chunks in 2 waves of 1: at least 4,050,000 rows each keep overhead <= 10%",
        "memory_bound_rows": strategy.memory_bound_rows,
        "executor": "in_process",
        "step_overhead_seconds": 0.15,
        "step_overhead_source": "history: median of 1 run(s)",
        "throughput_records_per_second": 3_000_000.0,
        "throughput_source": "history: median of 1 run(s)",
        "expected_overhead_share": round(0.3 / (0.3 + 11_141_000 / 3e6), 4),  # 2 chunk steps (ranges in them) x 0.15 s
        "estimated_seconds": round(0.3 + 11_141_000 / 3e6, 3),
        "estimated_cost": None,
        "cost_choice": "no cost_per_worker_hour or deadline_seconds set: all 1 parallel task(s)",
    }
