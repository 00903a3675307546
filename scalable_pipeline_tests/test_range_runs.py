"""Runs of several hours (a backfill's ``BackfillPolicy.multi_run``): each hour processed, gated and published
on its own, every path in one run, and an hour that fails its gate left out while the others publish."""

from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.observing.read_model import runs_by_partition
from scalable_pipeline.processing.hours import NOT_PUBLISHED_KEY, PUBLISHED_KEY
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.test_pipeline import expected_from_raw
from scalable_pipeline_tests.test_pipelines import LARGE, PINNED, START, definitions, published

# Monday 2026-01-05 03:00-10:00 at scale 1: hours from 1.6k to 9.9k records, so the routed pipeline takes all
# three paths in one run. The strict rule's hour (05:00) fails invalid_ratio; every other hour passes.
FIRST, LAST, STRICT = "2026-01-05-03:00", LARGE, "2026-01-05-05:00"
HOURS = [f"2026-01-05-{hour:02d}:00" for hour in range(3, 11)]
RANGE = f"""
pools: {{chunk_processing: 3}}
pipelines:
  - name: routed
    start: "{START}"
    backfill_hours_per_run: 8
    scaling: {{chunk_count: 3, single_step_below: 2000, priority_above: 5000, {PINNED}}}
  - name: strict
    start: "{START}"
    scaling: {{chunk_count: 2, {PINNED}}}
    time_rules:
      - {{name: strict_five, hours: "5-6", quality: {{max_invalid_ratio: 0.0001}}}}
"""
ASSETS = ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output")


def run_range(defs: dg.Definitions, job: str, instance, first: str = FIRST, last: str = LAST) -> dg.ExecuteInProcessResult:
    """One run of the hours ``first`` to ``last``, as a backfill's range run is tagged."""
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict]:
    """Each hour's materialization metadata of ``asset`` in the run."""
    return {
        event.materialization.partition: {key: value.value for key, value in event.materialization.metadata.items()}
        for event in (
            e.event_specific_data for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if event.materialization.asset_key.path[-1] == asset
    }


def check_evaluations(result: dg.ExecuteInProcessResult, check: str) -> dict[str | None, bool]:
    return {e.partition: e.passed for e in result.get_asset_check_evaluations() if e.check_name == check}


@dataclass
class RangeRun:
    result: dg.ExecuteInProcessResult
    expected: dict[str, pd.DataFrame]  # each hour's valid rows by the whole-hour computation on its published raw hour
    outputs: dict[str, pd.DataFrame]  # each published consolidated_output hour
    status: dict[str, dg.AssetPartitionStatus]  # each hour's consolidated_output as the instance has it
    published: dict[str, set[str]]  # the hours of each asset with a published version
    runs_of_hour: dict[str, list[str]]  # the runs `status` lists for each hour


@pytest.fixture(scope="module")
def range_runs(tmp_path_factory) -> dict[str, RangeRun]:
    """A range run of each pipeline, and what it published (read here: each test has its own data root)."""
    tmp_path = tmp_path_factory.mktemp("ranges")
    runs = {}
    with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.ephemeral() as instance:
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(tmp_path / "data"))
        defs = definitions(tmp_path, RANGE)
        for job in ("routed", "strict"):
            result = run_range(defs, job, instance)
            store = VersionedStore(tmp_path / "data" / "pipelines" / job)
            done = {asset: {hour for hour in HOURS if store.published(asset, hour)} for asset in ASSETS}
            raws = {hour: published(defs, [job], "raw_volume", hour, instance) for hour in done["raw_volume"]}
            runs[job] = RangeRun(
                result,
                {hour: expected_from_raw(raw, hour)["valid"] for hour, raw in raws.items()},
                {hour: published(defs, [job], "consolidated_output", hour, instance) for hour in done["consolidated_output"]},
                instance.get_status_by_partition(
                    dg.AssetKey([job, "consolidated_output"]), HOURS, defs.resolve_job_def(job).partitions_def
                ),
                done,
                {
                    hour: [r.dagster_run.run_id for r in records]
                    for hour, records in runs_by_partition(instance, HOURS, job, [job]).items()
                },
            )
        assert defs.resolve_job_def("routed").asset_layer.get(dg.AssetKey(["routed", "raw_volume"])).backfill_policy == (
            dg.BackfillPolicy.multi_run(8)
        )
    return runs


@pytest.mark.slow
def test_one_run_publishes_every_hour_of_its_range_equal_to_the_whole_hour(range_runs):
    run = range_runs["routed"]
    routed = run.result
    assert routed.success
    paths = set()
    assert set(run.outputs) == set(HOURS)
    for hour in HOURS:
        output = run.outputs[hour]
        pd.testing.assert_frame_equal(output, run.expected[hour], check_dtype=False)
        for asset in ASSETS:
            metadata = materializations(routed, asset)[hour]
            assert metadata.get(PUBLISHED_KEY, True) is True and metadata["version"]
        paths.add(materializations(routed, "processed_chunks")[hour]["processing_path"])
        assert materializations(routed, "consolidated_output")[hour]["valid"] == len(output)
    assert paths == {"single_step", "fan_out", "fan_out_priority"}  # every path in the one run
    for asset in ("processed_chunks", "consolidated_output"):  # each hour published by a Delta commit of its own
        assert len({materializations(routed, asset)[hour]["table_version"] for hour in HOURS}) == len(HOURS)
    assert run.runs_of_hour == {hour: [routed.run_id] for hour in HOURS}  # `status` lists the run under each hour
    # Each hour's gates are recorded on its own partition.
    assert dict.fromkeys(HOURS, True).items() <= check_evaluations(routed, "invalid_ratio").items()
    # The chunk steps of the hours on one path were fanned out together (the priority path: 09:00 and 10:00),
    # each step named by its hour.
    chunk_steps = {e.step_key or "" for e in routed.all_events if e.is_step_start and "[chunk_" in (e.step_key or "")}
    priority_hours = {key.split("[chunk_")[1][:10] for key in chunk_steps if "priority" in key or "reserved" in key}
    assert priority_hours == {"2026010509", "2026010510"}


@pytest.mark.slow
def test_an_hour_that_fails_its_gate_is_left_out_while_the_other_hours_publish(range_runs):
    run = range_runs["strict"]
    strict = run.result
    assert not strict.success  # the run fails, naming the hour
    failure = next(e for e in strict.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert STRICT in failure.step_failure_data.error.message and "invalid_ratio" in failure.step_failure_data.error.message
    assert check_evaluations(strict, "invalid_ratio")[STRICT] is False
    assert all(check_evaluations(strict, "invalid_ratio")[hour] for hour in HOURS if hour != STRICT)
    processed = materializations(strict, "processed_chunks")[STRICT]
    assert processed[PUBLISHED_KEY] is False and "invalid_ratio" in processed[NOT_PUBLISHED_KEY]
    assert STRICT not in materializations(strict, "consolidated_output")
    assert set(materializations(strict, "consolidated_output")) == set(HOURS) - {STRICT}
    assert run.published["raw_volume"] == run.published["chunk_partitions"] == set(HOURS)
    assert run.published["processed_chunks"] == run.published["consolidated_output"] == set(HOURS) - {STRICT}
    for hour in set(HOURS) - {STRICT}:
        pd.testing.assert_frame_equal(run.outputs[hour], run.expected[hour], check_dtype=False)
    status = run.status
    assert status[STRICT] == dg.AssetPartitionStatus.FAILED
    assert {status[hour] for hour in HOURS if hour != STRICT} == {dg.AssetPartitionStatus.MATERIALIZED}
