"""The four assets end to end, checked against an independent pandas computation of the rules."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from scalable_pipeline.core.dagster_home import PROJECT_DAGSTER_YAML
from scalable_pipeline.definitions import defs
from scalable_pipeline.execution.executors import EXECUTOR_MODE_TAG, auto_executor_config, run_executor_mode
from scalable_pipeline.processing import ranges
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.scaling.decision import executor_mode
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests.conftest import OFF_PEAK_PARTITION, PEAK_PARTITION, materialization_metadata, materialize_hour

VALID = {"placed", "paid", "shipped", "cancelled"}


def expected_from_raw(raw: pd.DataFrame, partition_key: str) -> dict:
    """Rule 4 written out again, directly on the stored raw table."""
    hour_start = pd.Timestamp(f"{partition_key[:10]} {partition_key[11:]}", tz="UTC")
    hour_end = hour_start + pd.Timedelta(hours=1)
    first = raw[~raw["order_id"].duplicated(keep="first")]
    ok = (
        first["customer_id"].notna()
        & first["amount"].notna()
        & (first["amount"] > 0)
        & np.isfinite(first["amount"].astype("float64"))
        & first["status"].isin(VALID)
        & (first["event_time"] >= hour_start)
        & (first["event_time"] < hour_end)
    )
    valid = first[ok.fillna(False).astype(bool)].sort_values("order_id").reset_index(drop=True)
    return {"valid": valid, "duplicates": len(raw) - len(first), "invalid": len(first) - len(valid)}


@pytest.mark.parametrize("partition_key, peak", [(PEAK_PARTITION, True), (OFF_PEAK_PARTITION, False)])
def test_full_run_matches_independent_computation(partition_key, peak, instance, data_dir):
    result = materialize_hour(partition_key, instance)
    assert result.success

    raw = defs.load_asset_value("raw_volume", partition_key=partition_key, instance=instance)
    output = defs.load_asset_value("consolidated_output", partition_key=partition_key, instance=instance)
    expected = expected_from_raw(raw, partition_key)

    assert (8_000 <= len(raw) <= 12_000) if peak else (1_000 <= len(raw) <= 3_000)
    assert expected["duplicates"] > 0 and expected["invalid"] > 0  # the source really injected defects
    pd.testing.assert_frame_equal(output, expected["valid"], check_dtype=False)
    assert output.dtypes.equals(raw.dtypes)
    processed = defs.load_asset_value("processed_chunks", partition_key=partition_key, instance=instance)
    assert len(processed) == len(raw) and processed[list(raw.columns)].dtypes.equals(raw.dtypes)
    for asset, rows in (("processed_chunks", len(raw)), ("consolidated_output", len(output))):  # the docs' batch read
        hour = DeltaTable(data_dir / "tables" / asset).to_pyarrow_dataset(
            file_pruning_predicate=[("partition", "=", partition_key)]
        )
        assert sum(batch.num_rows for batch in hour.to_batches(batch_size=1_000)) == rows

    raw_meta = materialization_metadata(result, "raw_volume")
    assert raw_meta["total_records"] == len(raw) and raw_meta["peak_hour"] is peak
    output_meta = materialization_metadata(result, "consolidated_output")
    assert output_meta["raw_records"] == len(raw)
    assert output_meta["valid"] == len(output)
    assert (output_meta["duplicates"], output_meta["invalid"]) == (expected["duplicates"], expected["invalid"])
    by_region = {row.data["region"]: row.data for row in output_meta["region_totals"].records}
    for region, group in output.groupby("region"):
        assert by_region[region]["orders"] == len(group)
        assert by_region[region]["revenue"] == pytest.approx(group["amount"].sum(), abs=0.01)

    checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    core_gates = {
        ("raw_volume", "raw_schema"),
        ("chunk_partitions", "chunk_plan_covers_raw"),
        ("processed_chunks", "invalid_ratio"),
        ("processed_chunks", "duplicate_ratio"),
        ("processed_chunks", "chunks_complete"),
        ("consolidated_output", "reconciliation"),
        ("consolidated_output", "unique_order_id"),
    }
    assert core_gates <= set(checks) and all(checks.values())


def test_raw_volume_is_stored_in_raw_order_and_reproducible(instance):
    materialize_hour(PEAK_PARTITION, instance)
    raw = defs.load_asset_value("raw_volume", partition_key=PEAK_PARTITION, instance=instance)
    regenerated = SyntheticOrderSource().fetch_hour(pd.Timestamp("2026-01-05 10:00", tz="UTC"))
    pd.testing.assert_frame_equal(raw, regenerated)


@pytest.mark.slow
def test_same_output_whatever_the_chunking(instance, data_dir):
    outputs = {}
    for chunks in (1, 3, 17):
        result = materialize_hour(PEAK_PARTITION, instance, scaling=ScalingResource(chunk_count=chunks))
        assert materialization_metadata(result, "chunk_partitions")["chunk_count"] == chunks
        chunk_steps = [e for e in result.get_step_success_events() if e.step_key.startswith("processed_chunks.process_chunk[")]
        assert len(chunk_steps) == chunks
        outputs[chunks] = defs.load_asset_value("consolidated_output", partition_key=PEAK_PARTITION, instance=instance)
    pd.testing.assert_frame_equal(outputs[1], outputs[3])
    pd.testing.assert_frame_equal(outputs[1], outputs[17])


@pytest.mark.slow
def test_same_output_when_chunk_steps_cut_their_rows_into_several_ranges(instance, data_dir, monkeypatch):
    monkeypatch.setattr(ranges, "MIN_SPLIT_RANGE_ROWS", 500)  # big-hour behaviour on a small hour: 4 ranges per chunk
    # about 500,000 records in 10 raw row groups, no late resends: each range comes from one or two chunks
    in_order = SyntheticOrderSource(scale=45, duplicate_rate=0.0)
    result = materialize_hour(PEAK_PARTITION, instance, scaling=ScalingResource(chunk_count=4), source=in_order)
    plan = materialization_metadata(result, "chunk_partitions")
    assert plan["range_count"] == 4 * ranges.RANGES_PER_INLINE_CHUNK and plan["ranges_in_chunk_steps"] > 0
    raw = defs.load_asset_value("raw_volume", partition_key=PEAK_PARTITION, instance=instance)
    output = defs.load_asset_value("consolidated_output", partition_key=PEAK_PARTITION, instance=instance)
    pd.testing.assert_frame_equal(output, expected_from_raw(raw, PEAK_PARTITION)["valid"], check_dtype=False)


def test_duplicates_across_chunks_are_caught(instance):
    result = materialize_hour(
        OFF_PEAK_PARTITION,
        instance,
        source=SyntheticOrderSource(duplicate_rate=0.2),
        scaling=ScalingResource(chunk_count=9),
        quality=QualityResource(max_duplicate_ratio=0.3),
    )
    raw = defs.load_asset_value("raw_volume", partition_key=OFF_PEAK_PARTITION, instance=instance)
    output = defs.load_asset_value("consolidated_output", partition_key=OFF_PEAK_PARTITION, instance=instance)
    chunk_of_row = np.searchsorted([c["stop_row"] for c in plan_chunks(result)], np.arange(len(raw)), side="right")
    first_row = raw.groupby("order_id").cumcount() == 0
    first_chunk = pd.Series(chunk_of_row[first_row.to_numpy()], index=raw.loc[first_row, "order_id"])
    repeats = raw.index[~first_row]
    assert (chunk_of_row[repeats] != first_chunk.loc[raw.loc[repeats, "order_id"]].to_numpy()).any()  # some span chunks
    by_range = sum(
        e.event_specific_data.metadata["duplicates"].value
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key.startswith("processed_chunks.process_range[")
    )
    all_duplicates = int(raw["order_id"].duplicated().sum())
    assert by_range == all_duplicates == materialization_metadata(result, "processed_chunks")["duplicates"]
    assert output["order_id"].is_unique


def plan_chunks(result) -> list[dict]:
    plan_path = materialization_metadata(result, "chunk_partitions")["path"]
    return json.loads(Path(plan_path).read_text())["chunks"]


@pytest.mark.slow
def test_chunk_plan_metadata_records_the_strategy(instance):
    pinned = ScalingResource(
        cpu_usage_percent=20, memory_usage_percent=30, available_workers=12, queue_length=0, min_batch_size=100
    )
    result = materialize_hour(PEAK_PARTITION, instance, scaling=pinned)
    meta = materialization_metadata(result, "chunk_partitions")
    assert meta["processing_mode"] == "aggressive" and meta["parallel_tasks"] == 12
    assert meta["chunk_count"] == 24  # two waves of 12: the chunk steps process the order_id ranges
    raw_records = materialization_metadata(result, "raw_volume")["total_records"]
    assert meta["batch_size"] == -(-raw_records // 24)
    snapshot = meta["resource_snapshot"]
    assert snapshot["cpu_usage_percent"] == 20 and snapshot["available_workers"] == 12
    assert snapshot["sources"]["cpu_usage_percent"] == "pinned"
    assert snapshot["memory_total_bytes"] > 0


def test_failing_gate_blocks_consolidation(instance, data_dir):
    result = materialize_hour(PEAK_PARTITION, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.001))
    assert not result.success
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "invalid_ratio")
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert gate.metadata["threshold"].value == 0.001 and gate.metadata["score"].value > 0.001
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "consolidated_output" not in materialized and "processed_chunks" not in materialized
    store = VersionedStore(data_dir)
    assert store.published("consolidated_output", PEAK_PARTITION) is None
    assert store.published("processed_chunks", PEAK_PARTITION) is None


@pytest.mark.slow
def test_estimated_processing_time_comes_from_measured_throughput(instance):
    first = materialize_hour(PEAK_PARTITION, instance)
    assert materialization_metadata(first, "raw_volume")["estimated_processing_time"] is None
    throughput = materialization_metadata(first, "processed_chunks")["records_per_second"]
    second = materialize_hour(OFF_PEAK_PARTITION, instance)
    records = materialization_metadata(second, "raw_volume")["total_records"]
    assert materialization_metadata(second, "raw_volume")["estimated_processing_time"] == pytest.approx(
        records / throughput, abs=1e-3
    )


@pytest.mark.slow
def test_definitions_validate(tmp_path):
    shutil.copyfile(PROJECT_DAGSTER_YAML, tmp_path / "dagster.yaml")
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(PROJECT_DAGSTER_YAML.parent / "workspace.yaml")],
        check=False,
        capture_output=True,
        text=True,
        cwd=PROJECT_DAGSTER_YAML.parent,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_job_and_schedule_are_defined():
    job = defs.resolve_job_def("scalable_data_processing")
    assert job.partitions_def is not None
    schedule = defs.resolve_schedule_def("scalable_data_processing_schedule")
    assert schedule.cron_schedule == "0 * * * *" and schedule.job_name == "scalable_data_processing"


def test_data_root_set_in_run_config_reaches_every_step(tmp_path, data_dir):
    configured = tmp_path / "configured_root"
    result = defs.resolve_job_def("scalable_data_processing").execute_in_process(
        partition_key=OFF_PEAK_PARTITION,
        run_config={
            "resources": {"data_store": {"config": {"data_dir": str(configured)}}, "scaling": {"config": {"chunk_count": 2}}}
        },
    )
    assert result.success
    assert VersionedStore(configured).published("consolidated_output", OFF_PEAK_PARTITION) is not None
    assert not (data_dir / "tables").exists()


def test_max_concurrent_reaches_the_executor_and_the_scaling_decision():
    job = defs.resolve_job_def("scalable_data_processing")
    config = {"mode": "multiprocess", "max_concurrent": 3}
    executor_config = dg.validate_run_config(job, {"execution": {"config": config}})["execution"]["auto"]["multiprocess"]
    assert executor_config["max_concurrent"] == 3
    assert "forkserver" in executor_config["start_method"]
    assert auto_executor_config({"mode": "in_process"}) == {"in_process": {}}


def test_a_run_picks_its_executor_mode_in_its_config_else_the_machine_s(instance):
    job = defs.resolve_job_def("scalable_data_processing")
    assert job.executor_def.name == "auto"
    machine_mode = job.tags[EXECUTOR_MODE_TAG]
    assert machine_mode == executor_mode(len(os.sched_getaffinity(0)))  # this machine has no CPU quota
    assert run_executor_mode("auto", {}, job.tags) == machine_mode
    assert run_executor_mode("auto", {"execution": {"config": {"mode": "multiprocess"}}}, job.tags) == "multiprocess"
    assert run_executor_mode("multiprocess", {}, job.tags) is None
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"execution": {"config": {"mode": "threads"}}})
