"""Nothing mixed, nothing outside the data root: partition keys, content lineage, empty hours, the lease."""

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.assembly.rollback_partition import ROLLBACK_JOB_NAME
from scalable_pipeline.cli.main import main
from scalable_pipeline.core.paths import InvalidPartitionKey, UnsafeName, partition_dirname, require_partition_key, under_root
from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.partition_lease import PartitionLeases
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests import drills
from scalable_pipeline_tests.conftest import (
    OFF_PEAK_PARTITION,
    PIPELINE_ASSETS,
    materialization_metadata,
    materialize_hour,
    step_failure,
)
from scalable_pipeline_tests.test_pipeline import expected_from_raw

PARTITION = OFF_PEAK_PARTITION


@pytest.mark.parametrize("key", ["2026-01-05-10:30", "../../x", "2026-01-05-1000", "2026-02-30-10:00", ""])
def test_only_hourly_partition_keys_map_to_paths(key, tmp_path):
    with pytest.raises(InvalidPartitionKey, match="is not an hourly partition"):
        partition_dirname(key)


@pytest.mark.parametrize("key", ["2025-12-31-23:00", "2999-01-01-00:00"])
def test_a_pipeline_has_the_hours_from_its_start_to_the_last_complete_hour(key):
    hours = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00")
    assert partition_dirname(key) == key.replace(":", "")  # a path of the data root
    with pytest.raises(
        InvalidPartitionKey, match="not an hourly partition of eu_orders: outside the partitions, which run from 2026-01-01-00:00"
    ):
        require_partition_key(key, hours, "eu_orders")


@pytest.mark.parametrize("part", ["..", ".", "a/b", "/etc", "x\\y", ""])
def test_path_components_cannot_leave_the_root(part, tmp_path):
    with pytest.raises(UnsafeName):
        under_root(tmp_path, "tables", part)


def test_a_key_that_is_not_on_the_hour_fails_before_anything_is_written(instance, data_dir):
    result = materialize_hour("2026-01-05-10:30", instance, raise_on_error=False)
    assert not result.success
    failure = step_failure(result)
    assert failure.step_key == "raw_volume"
    assert "not on the hour" in failure.step_failure_data.user_failure_data.description
    assert not result.get_asset_materialization_events()
    assert not data_dir.exists() or not any(data_dir.rglob("*"))  # no table, lock or checkpoint


def test_cli_rejects_a_key_that_is_not_on_the_hour(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--partition", "2026-01-05-10:30"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2026-01-05-10:30" in err[0] and "not on the hour" in err[0]
    assert not (tmp_path / "home" / "scalable_pipeline_data").exists()


def test_rollback_with_a_path_as_partition_writes_nothing_anywhere(instance, data_dir, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    result = defs.resolve_job_def(ROLLBACK_JOB_NAME).execute_in_process(
        run_config={
            "ops": {"set_published_version": {"config": {"asset": "raw_volume", "partition": "../../x", "version": "v1-a"}}}
        },
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    assert "not an hourly partition" in str(result.failure_data_for_node("set_published_version").error)
    assert sorted(tmp_path.rglob("*")) == before


def test_rollback_of_an_unknown_asset_is_refused(instance, data_dir):
    result = defs.resolve_job_def(ROLLBACK_JOB_NAME).execute_in_process(
        run_config={"ops": {"set_published_version": {"config": {"asset": "../raw", "partition": PARTITION, "version": "v1-a"}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert "unknown asset '../raw'" in str(result.failure_data_for_node("set_published_version").error)
    assert not data_dir.exists()


def in_process_pipeline_job() -> dg.JobDefinition:
    """The main job's assets with the in-process executor, reconstructable for re-execution in tests."""
    job = dg.define_asset_job("trust_pipeline", selection=PIPELINE_ASSETS, executor_def=dg.in_process_executor)
    assets = [defs.get_assets_def(key) for key in PIPELINE_ASSETS]
    return dg.Definitions(assets=assets, jobs=[job], resources=defs.resources).resolve_job_def("trust_pipeline")


def run_config(**resources: dict) -> dict:
    return {"resources": {"scaling": {"config": {"chunk_count": 3}}, **{k: {"config": v} for k, v in resources.items()}}}


def execute(instance, config: dict, parent_run_id: str | None = None) -> dg.JobExecutionResult:
    return drills.execute_partition(in_process_pipeline_job, instance, config, PARTITION, parent_run_id)


@pytest.mark.slow
def test_reexecution_never_publishes_an_output_mixed_from_two_runs(data_dir):
    with dg.instance_for_test() as instance:
        run_a = execute(instance, run_config(faults={"fail_chunks": [1]}))
        assert not run_a.success  # raw A and plan A published, chunk 1 failed
        # B re-reads the hour: same row count, different content; publishes raw and plan, then fails a gate
        run_b = execute(instance, run_config(source={"invalid_rate": 0.03}, quality={"max_invalid_ratio": 0.0}))
        assert not run_b.success
        store = VersionedStore(data_dir)
        raw_b = store.require_published("raw_volume", PARTITION)
        assert raw_b.version != materialization_metadata(run_a, "raw_volume")["version"]
        assert (
            materialization_metadata(run_b, "raw_volume")["total_records"]
            == materialization_metadata(run_a, "raw_volume")["total_records"]
        )

        again = execute(instance, run_config(faults={"fail_chunks": [1]}), parent_run_id=run_a.run_id)

        assert not again.success
        lineage = next(e for e in again.get_asset_check_evaluations() if e.check_name == "chunks_lineage")
        assert not lineage.passed and raw_b.version in lineage.description
        assert store.published("processed_chunks", PARTITION) is None
        assert store.published("consolidated_output", PARTITION) is None

        fresh = execute(instance, run_config(source={"invalid_rate": 0.03}))
        assert fresh.success
        raw = store.read_published_table("raw_volume", PARTITION)
        output = store.read_published_table("consolidated_output", PARTITION)
        pd.testing.assert_frame_equal(output, expected_from_raw(raw, PARTITION)["valid"], check_dtype=False)
        assert store.require_published("consolidated_output", PARTITION).raw_digest == raw_b.raw_digest


@pytest.mark.slow
def test_an_empty_hour_never_replaces_a_full_one_unless_asked(instance, data_dir):
    assert materialize_hour(PARTITION, instance).success
    store = VersionedStore(data_dir)
    full = store.require_published("raw_volume", PARTITION)

    empty = materialize_hour(PARTITION, instance, raise_on_error=False, source=SyntheticOrderSource(scale=0))

    assert not empty.success
    gate = next(e for e in empty.get_asset_check_evaluations() if e.check_name == "raw_volume_drop")
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR and gate.metadata["score"].value == 1.0
    assert store.require_published("raw_volume", PARTITION) == full

    on_purpose = materialize_hour(
        PARTITION, instance, source=SyntheticOrderSource(scale=0), quality=QualityResource(allow_volume_drop=True)
    )
    assert on_purpose.success
    assert materialization_metadata(on_purpose, "consolidated_output")["valid"] == 0
    assert len(store.read_published_table("consolidated_output", PARTITION)) == 0


@pytest.mark.slow
def test_a_smaller_hour_within_the_threshold_publishes(instance, data_dir):
    assert materialize_hour(PARTITION, instance).success
    smaller = materialize_hour(PARTITION, instance, source=SyntheticOrderSource(scale=0.5))
    gate = next(e for e in smaller.get_asset_check_evaluations() if e.check_name == "raw_volume_drop")
    assert gate.passed and 0.45 < gate.metadata["score"].value < 0.55


def test_the_lease_is_released_by_a_successful_run_and_free_after_a_failed_one(instance, data_dir):
    failed = materialize_hour(PARTITION, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.0))
    assert not failed.success and PartitionLeases(data_dir).holder(PARTITION) == failed.run_id
    succeeded = materialize_hour(PARTITION, instance)
    assert succeeded.success and PartitionLeases(data_dir).holder(PARTITION) is None
