"""The scaling decision learns from the Dagster instance: per-step overhead of each executor from the
chunk steps' events, throughput from processed_chunks; the chunk plan records what it assumed and where
it came from."""

from collections import defaultdict
from statistics import median

import dagster as dg
import pytest

from scalable_pipeline.scaling.decision import (
    ResourceSnapshot,
    ScalingLimits,
    decide_strategy,
    estimate_run,
    execution_profile,
)
from scalable_pipeline.scaling.history import step_overheads
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline_tests.conftest import (
    OFF_PEAK_PARTITION,
    PEAK_PARTITION,
    materialization_metadata,
    materialize_hour,
    measured_step_overheads,
)

PINNED_MACHINE = {"cpu_usage_percent": 10.0, "memory_usage_percent": 20.0, "queue_length": 0}


def overheads_from_the_event_log(instance: dg.DagsterInstance, run_id: str) -> list[float]:
    """Independently of throughput.py: STEP_START to STEP_SUCCESS of each process_chunk step, less its `seconds`."""
    steps: dict[str, dict] = defaultdict(dict)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not (entry.step_key or "").startswith("processed_chunks.process_chunk["):
            continue
        if event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            steps[entry.step_key][event.event_type_value] = entry.timestamp
        if event.event_type_value == "STEP_OUTPUT":
            steps[entry.step_key]["seconds"] = event.step_output_data.metadata["seconds"].value
    return [s["STEP_SUCCESS"] - s["STEP_START"] - s["seconds"] for s in steps.values()]


@pytest.mark.slow
def test_first_run_uses_defaults_and_the_next_plans_from_what_it_measured(instance):
    first = materialize_hour(PEAK_PARTITION, instance, scaling=ScalingResource(chunk_count=4, **PINNED_MACHINE))
    first_plan = materialization_metadata(first, "chunk_partitions")
    assert first_plan["executor"] == "in_process"
    assert first_plan["step_overhead_source"] == "default for in_process (no history)"
    assert first_plan["throughput_source"] == "default (no history)"

    measured = step_overheads(instance, first.run_id)
    assert sorted(measured) == pytest.approx(sorted(overheads_from_the_event_log(instance, first.run_id)), abs=1e-6)
    assert len(measured) == 4 and all(value > 0 for value in measured)
    assert measured_step_overheads(instance, "in_process") == [pytest.approx(median(measured))]
    assert measured_step_overheads(instance, "multiprocess") == []  # history is kept per executor

    second = materialize_hour(OFF_PEAK_PARTITION, instance, scaling=ScalingResource(**PINNED_MACHINE))
    plan = materialization_metadata(second, "chunk_partitions")
    throughput = materialization_metadata(first, "processed_chunks")["records_per_second"]
    assert plan["step_overhead_seconds"] == round(median(measured), 4)
    assert plan["step_overhead_source"] == "history: median of 1 run(s)"
    assert plan["throughput_records_per_second"] == throughput
    assert plan["throughput_source"] == "history: median of 1 run(s)"

    # The plan is the pure decision on the recorded snapshot and history.
    recorded = plan["resource_snapshot"]
    snapshot = ResourceSnapshot(
        recorded["cpu_usage_percent"],
        recorded["memory_usage_percent"],
        recorded["memory_total_bytes"],
        recorded["available_workers"],
        recorded["queue_length"],
    )
    profile = execution_profile("in_process", [median(measured)], [throughput])
    records = materialization_metadata(second, "raw_volume")["total_records"]
    expected = decide_strategy(records, snapshot, plan["bytes_per_record"], ScalingLimits(), profile)
    assert (plan["chunk_count"], plan["parallel_tasks"]) == (expected.chunk_count, expected.parallel_tasks) == (2, 1)
    assert plan["expected_overhead_share"] == round(estimate_run(records, 2, 1, profile).overhead_share, 4)


def test_pinned_overhead_and_throughput_replace_the_history(instance):
    scaling = ScalingResource(step_overhead_seconds=0.5, throughput_records_per_second=2e6, **PINNED_MACHINE)
    plan = materialization_metadata(materialize_hour(OFF_PEAK_PARTITION, instance, scaling=scaling), "chunk_partitions")
    assert (plan["step_overhead_seconds"], plan["step_overhead_source"]) == (0.5, "pinned")
    assert (plan["throughput_records_per_second"], plan["throughput_source"]) == (2e6, "pinned")


def test_cost_choice_reaches_the_chunk_plan(instance):
    scaling = ScalingResource(
        available_workers=4,
        step_overhead_seconds=0.5,  # two steps per chunk: 1 s of overhead per wave
        throughput_records_per_second=1_000.0,  # ~2,000 records per off-peak hour: ~2 s of compute
        cost_per_worker_hour=36.0,
        deadline_seconds=2.5,
        **PINNED_MACHINE,
    )
    result = materialize_hour(OFF_PEAK_PARTITION, instance, scaling=scaling)
    plan = materialization_metadata(result, "chunk_partitions")
    records = materialization_metadata(result, "raw_volume")["total_records"]
    # one wave of w chunks takes 1 s + records / (1,000 w) s: the fewest workers within 2.5 s
    workers = next(w for w in range(1, 5) if 1.0 + -(-records // w) / 1_000 <= 2.5)
    assert workers > 1  # the deadline needs parallelism, and fewer workers than the 4 slots meet it
    assert plan["parallel_tasks"] == plan["chunk_count"] == workers
    assert plan["estimated_seconds"] == pytest.approx(1.0 + -(-records // workers) / 1_000, abs=1e-3)
    assert plan["estimated_cost"] == pytest.approx(36.0 * workers * plan["estimated_seconds"] / 3600, rel=1e-3)
    assert plan["cost_choice"].startswith(f"{workers} of 4 worker(s): the cheapest that meets the 2.5 s deadline")
