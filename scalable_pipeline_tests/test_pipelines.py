"""Pipelines from one YAML file: each materializes on its own, routes by volume and time, carries its priority."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.main import main
from scalable_pipeline.pipelines.config import CONFIG_ENV, PipelineConfigError
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.scaling.pools import FAN_OUT, FAN_OUT_PRIORITY, SINGLE_STEP
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests.conftest import materialization_metadata
from scalable_pipeline_tests.test_pipeline import expected_from_raw

PROJECT = Path(__file__).resolve().parent.parent
# Hours (Monday 2026-01-05) of the synthetic source at scale 1: 1,639, 2,892 and 9,937 records.
START = "2026-01-01-00:00"
SMALL, MEDIUM, LARGE = "2026-01-05-05:00", "2026-01-05-03:00", "2026-01-05-10:00"
PINNED = "cpu_usage_percent: 10, memory_usage_percent: 10, available_workers: 2, queue_length: 0"

TWO_PIPELINES = f"""
pipelines:
  - name: scalable_data_processing
    key_prefix: []
    start: "{START}"
    scaling: {{chunk_count: 2, {PINNED}}}
  - name: eu_orders
    source: {{kind: synthetic, scale: 0.5, seed: 7}}
    start: "{START}"
    schedule: "15 * * * *"
    priority: 5
    scaling: {{chunk_count: 3, {PINNED}}}
    time_rules:
      - {{name: business_hours, hours: "9-17", days: [mon, tue, wed, thu, fri], scaling: {{chunk_count: 5}}}}
"""

# Three pipelines on the same source (same seed): one per path whatever the hour, and one routed by volume.
PATHS = f"""
pools: {{chunk_processing: 3}}
pipelines:
  - name: single
    start: "{START}"
    scaling: {{chunk_count: 3, single_step_below: 1000000000, {PINNED}}}
  - name: fan
    start: "{START}"
    scaling: {{chunk_count: 3, {PINNED}}}
  - name: priority
    start: "{START}"
    reserved_slots: 1
    scaling: {{chunk_count: 3, priority_above: 0, {PINNED}}}
  - name: routed
    start: "{START}"
    scaling: {{chunk_count: 3, single_step_below: 2000, priority_above: 5000, {PINNED}}}
"""


def definitions(tmp_path, text: str) -> dg.Definitions:
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(text))
    return build_definitions(path)


def run_hour(defs: dg.Definitions, job: str, partition: str, instance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(partition_key=partition, instance=instance)


def published(defs: dg.Definitions, prefix: list[str], asset: str, partition: str, instance) -> pd.DataFrame:
    return defs.load_asset_value(dg.AssetKey([*prefix, asset]), partition_key=partition, instance=instance)


@pytest.mark.slow
def test_two_pipelines_from_one_file_materialize_on_their_own(tmp_path, instance, data_dir):
    defs = definitions(tmp_path, TWO_PIPELINES)
    eu = run_hour(defs, "eu_orders", MEDIUM, instance)
    assert eu.success
    # Only eu_orders ran: the main pipeline published nothing for the hour, in its own data root.
    assert VersionedStore(data_dir).published("consolidated_output", MEDIUM) is None
    assert VersionedStore(data_dir / "pipelines" / "eu_orders").published("consolidated_output", MEDIUM) is not None
    main = run_hour(defs, "scalable_data_processing", MEDIUM, instance)
    assert main.success

    for prefix, result in ((["eu_orders"], eu), ([], main)):
        raw = published(defs, prefix, "raw_volume", MEDIUM, instance)
        output = published(defs, prefix, "consolidated_output", MEDIUM, instance)
        expected = expected_from_raw(raw, MEDIUM)
        pd.testing.assert_frame_equal(output, expected["valid"], check_dtype=False)
        assert {e.asset_key for e in result.get_asset_materialization_events()} == {
            dg.AssetKey([*prefix, name]) for name in ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output")
        }
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks) and {tuple(c.asset_key.path[:-1]) for c in checks} == {tuple(prefix)}
    eu_raw = published(defs, ["eu_orders"], "raw_volume", MEDIUM, instance)
    main_raw = published(defs, [], "raw_volume", MEDIUM, instance)
    hour = pd.Timestamp("2026-01-05 03:00", tz="UTC")  # MEDIUM
    assert len(eu_raw) == SyntheticOrderSource(scale=0.5, seed=7).expected_records(hour)  # each from its own source
    assert len(main_raw) == SyntheticOrderSource().expected_records(hour)
    assert not eu_raw["order_id"].isin(main_raw["order_id"]).all()


def test_each_pipeline_has_its_job_schedule_priority_and_group(tmp_path):
    defs = definitions(tmp_path, TWO_PIPELINES)
    eu_job = defs.resolve_job_def("eu_orders")
    assert eu_job.tags["dagster/priority"] == "5"
    assert defs.resolve_job_def("scalable_data_processing").tags["dagster/priority"] == "0"
    assert {key.to_user_string() for key in eu_job.asset_layer.executable_asset_keys} == {
        "eu_orders/raw_volume",
        "eu_orders/chunk_partitions",
        "eu_orders/processed_chunks",
        "eu_orders/consolidated_output",
    }
    schedule = defs.resolve_schedule_def("eu_orders_schedule")
    assert schedule.cron_schedule == "15 * * * *" and schedule.job_name == "eu_orders"
    resources = {"eu_orders__data_store": DataStoreResource(data_dir=str(tmp_path)), "circuit_breaker": CircuitBreakerResource()}
    with dg.build_schedule_context(
        scheduled_execution_time=pd.Timestamp("2026-01-06 10:15", tz="UTC"), resources=resources
    ) as context:
        request = schedule(context)
    assert request.partition_key == "2026-01-06-09:00"  # the last hour that has ended
    with dg.build_schedule_context(
        scheduled_execution_time=pd.Timestamp("2026-01-01 00:15", tz="UTC"), resources=resources
    ) as context:
        assert isinstance(schedule(context), dg.SkipReason)  # before the first hour has ended
    with pytest.raises(dg.DagsterInvariantViolationError):
        defs.resolve_schedule_def("scalable_data_processing_schedule")  # no schedule in its entry: none


def test_time_rules_override_settings_per_hour_and_show_in_metadata(tmp_path, instance):
    defs = definitions(tmp_path, TWO_PIPELINES)
    business = run_hour(defs, "eu_orders", LARGE, instance)  # Monday 10:00
    night = run_hour(defs, "eu_orders", MEDIUM, instance)  # Monday 03:00
    business_plan = materialization_metadata(business, "chunk_partitions")
    night_plan = materialization_metadata(night, "chunk_partitions")
    assert (business_plan["time_rule"], business_plan["chunk_count"]) == ("business_hours", 5)
    assert (night_plan["time_rule"], night_plan["chunk_count"]) == ("none", 3)


def ran_and_skipped(result: dg.ExecuteInProcessResult) -> tuple[set[str], set[str]]:
    """Op names (without prefix and mapping key) of the steps that succeeded and that were skipped."""

    def op_name(step_key: str) -> str:
        return step_key.split(".")[-1].split("[")[0].split("__")[-1]

    kinds = {dg.DagsterEventType.STEP_SUCCESS: set(), dg.DagsterEventType.STEP_SKIPPED: set()}
    for event in result.all_events:
        if event.event_type in kinds and event.step_key:
            kinds[event.event_type].add(op_name(event.step_key))
    return kinds[dg.DagsterEventType.STEP_SUCCESS], kinds[dg.DagsterEventType.STEP_SKIPPED]


PATH_OPS = {
    SINGLE_STEP: {"process_hour"},
    FAN_OUT: {"fan_out_chunks", "process_chunk", "fan_out_ranges", "process_range", "fan_out_results"},
    FAN_OUT_PRIORITY: {"fan_out_priority_chunks", "join_chunk_results", "fan_out_ranges_priority", "priority_results"},
}
FIRST_OPS = {SINGLE_STEP: "process_hour", FAN_OUT: "fan_out_chunks", FAN_OUT_PRIORITY: "fan_out_priority_chunks"}


@pytest.fixture(scope="module")
def path_runs(tmp_path_factory):
    """Every path on the small, medium and large hour (and the routed pipeline), one instance and data root."""
    tmp_path = tmp_path_factory.mktemp("paths")
    with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.ephemeral() as instance:
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(tmp_path / "data"))
        defs = definitions(tmp_path, PATHS)
        runs = {
            (job, hour): run_hour(defs, job, hour, instance)
            for job in ("single", "fan", "priority", "routed")
            for hour in (SMALL, MEDIUM, LARGE)
        }
        outputs = {key: published(defs, [key[0]], "consolidated_output", key[1], instance) for key in runs}
        raws = {key: published(defs, [key[0]], "raw_volume", key[1], instance) for key in runs}
        yield runs, outputs, raws


@pytest.mark.slow
@pytest.mark.parametrize("job, path", [("single", SINGLE_STEP), ("fan", FAN_OUT), ("priority", FAN_OUT_PRIORITY)])
@pytest.mark.parametrize("hour", [SMALL, MEDIUM, LARGE])
def test_every_path_publishes_the_whole_hour_result(path_runs, job, path, hour):
    runs, outputs, raws = path_runs
    result = runs[(job, hour)]
    assert result.success
    assert materialization_metadata(result, "processed_chunks")["processing_path"] == path
    pd.testing.assert_frame_equal(outputs[(job, hour)], expected_from_raw(raws[(job, hour)], hour)["valid"], check_dtype=False)
    pd.testing.assert_frame_equal(outputs[(job, hour)], outputs[("fan", hour)])  # identical across paths
    ran, skipped = ran_and_skipped(result)
    assert PATH_OPS[path] <= ran
    assert {"route_hour", "collect_ranges"} <= ran
    for other in set(PATH_OPS) - {path}:
        assert not PATH_OPS[other] & ran
    # The first op of each path not taken shows as skipped (the rest follow it, or are never planned: dynamic fan-outs).
    assert skipped >= {first for other, first in FIRST_OPS.items() if other != path}


@pytest.mark.slow
def test_volume_routes_small_medium_and_large_hours(path_runs):
    runs, outputs, _ = path_runs
    paths = {
        hour: materialization_metadata(runs[("routed", hour)], "processed_chunks")["processing_path"]
        for hour in (SMALL, MEDIUM, LARGE)
    }
    assert paths == {SMALL: SINGLE_STEP, MEDIUM: FAN_OUT, LARGE: FAN_OUT_PRIORITY}
    for hour in (SMALL, MEDIUM, LARGE):
        pd.testing.assert_frame_equal(outputs[("routed", hour)], outputs[("fan", hour)])


@pytest.mark.slow
def test_priority_chunk_steps_spread_over_the_reserved_and_shared_pools(path_runs):
    runs, _, _ = path_runs
    job = runs[("priority", LARGE)].job_def
    processed = job.graph.node_named("priority__processed_chunks").definition
    pools = {
        name: processed.node_named(f"priority__{name}").definition.pool
        for name in ("process_chunk_reserved", "process_chunk_priority")
    }
    assert pools == {"process_chunk_reserved": "priority_reserved", "process_chunk_priority": "chunk_processing"}
    tags = processed.node_named("priority__process_chunk_priority").tags  # the step's tags
    assert tags["dagster/priority"] == "10"
    ran = {e.step_key.split(".")[-1].split("[")[0] for e in runs[("priority", LARGE)].all_events if e.is_step_success}
    assert {"priority__process_chunk_priority", "priority__process_range_priority"} <= ran


def test_a_mistake_in_the_file_fails_loading_the_definitions(tmp_path):
    with pytest.raises(PipelineConfigError, match=r"pipeline entry 2 \('eu_orders'\): field 'schedule'"):
        definitions(tmp_path, TWO_PIPELINES.replace('"15 * * * *"', '"15 * * *"'))


@pytest.mark.slow
def test_dagster_definitions_validate_shows_the_mistake(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(TWO_PIPELINES.replace("priority: 5", "priority: high")))
    (tmp_path / "home").mkdir()
    env = {**os.environ, CONFIG_ENV: str(path), "DAGSTER_HOME": str(tmp_path / "home")}
    validate = [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"]
    result = subprocess.run(validate, check=False, cwd=PROJECT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert (
        f"{path}: pipeline entry 2 ('eu_orders'): field 'priority': Input should be a valid integer"
        in result.stderr + result.stdout
    )


# A pipeline whose hours begin in 2025, and one whose gates' severities differ from the defaults.
ARCHIVE = f"""
pipelines:
  - name: scalable_data_processing
    key_prefix: []
  - name: archive
    start: "2025-03-01-00:00"
    schedule: "15 * * * *"
    scaling: {{chunk_count: 2, {PINNED}}}
    quality: {{gates: {{invalid_ratio: {{severity: WARN}}, volume_anomaly: {{severity: ERROR}}}}}}
"""
ARCHIVE_HOUR = "2025-03-02-05:00"


@pytest.mark.slow
def test_a_pipeline_s_hours_begin_at_its_own_start(tmp_path, instance, data_dir, monkeypatch, capsys):
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(ARCHIVE))
    defs = build_definitions(path)
    result = run_hour(defs, "archive", ARCHIVE_HOUR, instance)
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        f"archive/{name}" for name in ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output")
    }
    store = VersionedStore(data_dir / "pipelines" / "archive")
    assert store.published("consolidated_output", ARCHIVE_HOUR) is not None
    resources = {"archive__data_store": DataStoreResource(data_dir=str(tmp_path)), "circuit_breaker": CircuitBreakerResource()}
    with dg.build_schedule_context(
        scheduled_execution_time=pd.Timestamp("2025-03-02 06:15", tz="UTC"), resources=resources
    ) as context:
        assert defs.resolve_schedule_def("archive_schedule")(context).partition_key == ARCHIVE_HOUR

    # The command line resolves hours against the pipeline --pipeline names (the file the environment names).
    monkeypatch.setenv(CONFIG_ENV, str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--pipeline", "archive", "--partition", ARCHIVE_HOUR, "--chunks", "1"]) == 0
    assert capsys.readouterr().out.startswith("archive: 1 hour(s)")
    for argv in (["run", "--pipeline", "archive"], ["status", "--pipeline", "archive"]):
        assert main([*argv, "--partition", "2025-02-28-23:00"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert "--partition: partition '2025-02-28-23:00' is not an hourly partition of archive: outside the partitions, " in line
        assert "which run from 2025-03-01-00:00 to the last complete hour" in line
    assert main(["run", "--partition", ARCHIVE_HOUR]) == 2  # the main pipeline's hours begin in 2026
    assert "outside the partitions, which run from 2026-01-01-00:00" in capsys.readouterr().err


def test_each_check_is_blocking_as_its_pipeline_s_severity(tmp_path):
    defs = definitions(tmp_path, ARCHIVE)
    specs = {spec.key.to_user_string(): spec for asset in defs.assets for spec in asset.check_specs}
    warn = specs["archive/processed_chunks:invalid_ratio"]  # ERROR by default, WARN in this pipeline
    error = specs["archive/consolidated_output:volume_anomaly"]  # WARN by default, ERROR in this pipeline
    assert not warn.blocking and "Severity: WARN (not blocking" in warn.description
    assert error.blocking and "Severity: ERROR (blocking" in error.description
    # The other pipeline of the file keeps the defaults.
    assert specs["processed_chunks:invalid_ratio"].blocking and not specs["consolidated_output:volume_anomaly"].blocking
    assert "Severity: WARN (not blocking" in specs["consolidated_output:volume_anomaly"].description
