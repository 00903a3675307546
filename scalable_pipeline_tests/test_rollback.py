"""Write-audit-publish and rollback: a failed gate never replaces the last good data."""

import uuid
from datetime import datetime, timedelta

import dagster as dg
import pytest

from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.partition_lease import PartitionLeases
from scalable_pipeline.publishing.rollback_log import read_rollbacks, rollback_log_path
from scalable_pipeline.publishing.versioned_store import VersionedStore, dataset_parts
from scalable_pipeline.quality.gate_results import PIPELINE_STAGES
from scalable_pipeline.quality.gates import Severity
from scalable_pipeline.quality.resource import GateSettings, QualityResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests.conftest import OFF_PEAK_PARTITION, materialize_hour

PARTITION = OFF_PEAK_PARTITION


def day_before(partition: str) -> str:
    return (datetime.strptime(partition, PARTITION_FORMAT) - timedelta(days=1)).strftime(PARTITION_FORMAT)


def store() -> VersionedStore:
    return DataStoreResource().store()


def published_bytes(asset: str) -> tuple[str, bytes]:
    """The published version and its bytes (every part of a dataset version, in order)."""
    published = store().require_published(asset, PARTITION)
    return published.version, b"".join(part.read_bytes() for part in dataset_parts(published.path))


def observations(instance, asset: str) -> list[dict]:
    records = instance.fetch_observations(dg.AssetKey(asset), limit=20).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in records]


def check_results(result, asset: str) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == asset}


def test_bad_run_leaves_the_good_run_published_byte_for_byte(instance):
    assert materialize_hour(PARTITION, instance).success
    good = {asset: published_bytes(asset) for asset in ("processed_chunks", "consolidated_output")}

    bad = materialize_hour(PARTITION, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.0))

    assert not bad.success
    assert not check_results(bad, "processed_chunks")["invalid_ratio"].passed
    for asset, (version, data) in good.items():
        assert published_bytes(asset) == (version, data)
    # the failed run's staged version is gone: only the good one is stored
    assert store().versions("processed_chunks", PARTITION) == [good["processed_chunks"][0]]
    assert defs.load_asset_value("consolidated_output", partition_key=PARTITION, instance=instance).equals(
        store().read_published_table("consolidated_output", PARTITION)
    )


@pytest.mark.slow
def test_rollback_is_recorded_on_the_stage_and_the_stages_after_it(instance, data_dir):
    materialize_hour(PARTITION, instance)
    good_version = store().require_published("processed_chunks", PARTITION).version
    consolidated_version = store().require_published("consolidated_output", PARTITION).version

    bad = materialize_hour(PARTITION, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.0))

    log = read_rollbacks(data_dir)
    assert [(r.asset, r.cause_asset, r.kind) for r in log] == [
        ("processed_chunks", "processed_chunks", "automatic"),
        ("consolidated_output", "processed_chunks", "automatic"),
    ]
    stage, after = log
    assert stage.restored_version == good_version and stage.replaced_version and stage.run_id == bad.run_id
    assert after.restored_version == consolidated_version and after.replaced_version is None
    assert stage.gate == "invalid_ratio" and stage.threshold == 0.0 and stage.score > 0
    assert len(rollback_log_path(data_dir).read_text().splitlines()) == 2
    observed = observations(instance, "processed_chunks")[0]
    assert observed["restored_version"] == good_version
    assert (observed["gate"], observed["threshold"], observed["score"]) == ("invalid_ratio", 0.0, stage.score)
    assert observations(instance, "consolidated_output")[0]["restored_version"] == consolidated_version


def test_first_run_failing_publishes_nothing(instance, data_dir):
    bad = materialize_hour(PARTITION, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.0))

    assert not bad.success
    assert store().published("processed_chunks", PARTITION) is None
    assert store().versions("processed_chunks", PARTITION) == []
    assert store().published("consolidated_output", PARTITION) is None
    assert read_rollbacks(data_dir)[0].restored_version is None


def test_warn_gate_reports_and_publishes(instance, data_dir):
    quality = QualityResource(max_invalid_ratio=0.0, gates={"invalid_ratio": GateSettings(severity=Severity.WARN)})

    result = materialize_hour(PARTITION, instance, quality=quality)

    evaluation = check_results(result, "processed_chunks")["invalid_ratio"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert store().published("consolidated_output", PARTITION) is not None
    assert read_rollbacks(data_dir) == []


def test_error_gate_on_consolidated_output_rolls_it_back(instance, data_dir):
    """Per-gate severity and threshold from the quality resource: the volume gate made blocking (ERROR)."""
    materialize_hour(PARTITION, instance)
    version, data = published_bytes("consolidated_output")
    # a bigger hour with a static band of 0 around a one-day history: the volume gate fails, ERROR
    quality = QualityResource(gates={"volume_anomaly": GateSettings(severity=Severity.ERROR, threshold=0.0, adaptive=False)})
    instance.report_runless_asset_event(
        dg.AssetMaterialization("consolidated_output", partition=day_before(PARTITION), metadata={"valid": 10})
    )

    bad = materialize_hour(PARTITION, instance, raise_on_error=False, quality=quality)

    assert not bad.success
    assert published_bytes("consolidated_output") == (version, data)
    record = read_rollbacks(data_dir)[-1]
    assert (record.asset, record.gate, record.threshold, record.restored_version) == (
        "consolidated_output",
        "volume_anomaly",
        0.0,
        version,
    )
    # the earlier stages passed their own gates and stay published from this run (see README)
    assert store().require_published("processed_chunks", PARTITION).version.endswith(bad.run_id[:8])


def test_pipeline_stages_follow_the_asset_graph():
    """The stages after each stage in PIPELINE_STAGES are exactly its descendants in the definitions."""
    graph = defs.resolve_asset_graph()
    assert {key.path[-1] for key in graph.get_all_asset_keys()} == set(PIPELINE_STAGES)
    for index, stage in enumerate(PIPELINE_STAGES):
        descendants, frontier = set(), [dg.AssetKey(stage)]
        while frontier:
            children = graph.get(frontier.pop()).child_keys - descendants
            descendants |= children
            frontier.extend(children)
        assert {key.path[-1] for key in descendants} == set(PIPELINE_STAGES[index + 1 :])


def run_rollback(instance, raise_on_error=True, **config):
    return defs.resolve_job_def("rollback_partition").execute_in_process(
        run_config={"ops": {"set_published_version": {"config": config}}}, instance=instance, raise_on_error=raise_on_error
    )


@pytest.mark.slow
def test_manual_rollback_to_an_earlier_version(instance, data_dir):
    materialize_hour(PARTITION, instance)
    first_version, first_data = published_bytes("consolidated_output")
    materialize_hour(PARTITION, instance, source=SyntheticOrderSource(seed=7))
    second_version, second_data = published_bytes("consolidated_output")
    assert second_data != first_data

    result = run_rollback(
        instance, asset="consolidated_output", partition=PARTITION, version=first_version, reason="bad upstream feed"
    )

    assert result.success
    assert published_bytes("consolidated_output") == (first_version, first_data)
    record = read_rollbacks(data_dir)[-1]
    assert (record.kind, record.restored_version, record.replaced_version, record.reason) == (
        "manual",
        first_version,
        second_version,
        "bad upstream feed",
    )
    assert observations(instance, "consolidated_output")[0]["restored_version"] == first_version
    loaded = defs.load_asset_value("consolidated_output", partition_key=PARTITION, instance=instance)
    assert len(loaded) == len(store().read_published_table("consolidated_output", PARTITION))


@pytest.mark.parametrize("version", ["v1-doesnotexist", ""])
def test_manual_rollback_to_a_missing_version_changes_nothing(instance, data_dir, version):
    materialize_hour(PARTITION, instance)
    before = published_bytes("consolidated_output")
    table_version = store().hour_table("consolidated_output").table().version()

    result = run_rollback(instance, raise_on_error=False, asset="consolidated_output", partition=PARTITION, version=version)

    assert not result.success
    failure = result.failure_data_for_node("set_published_version")
    assert "Nothing changed" in failure.error.message and "no published-good version" in failure.error.message
    assert published_bytes("consolidated_output") == before
    assert store().hour_table("consolidated_output").table().version() == table_version
    assert read_rollbacks(data_dir) == []


@pytest.mark.slow
def test_manual_rollback_waits_for_a_run_writing_the_partition(instance, data_dir):
    materialize_hour(PARTITION, instance)
    first_version, _ = published_bytes("consolidated_output")
    materialize_hour(PARTITION, instance, source=SyntheticOrderSource(seed=7))
    before = published_bytes("consolidated_output")
    table_version = store().hour_table("consolidated_output").table().version()
    # another run of the partition is still going and holds its lease
    writer = instance.add_run(
        dg.DagsterRun(job_name="scalable_data_processing", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
    )
    PartitionLeases(data_dir).acquire(PARTITION, writer.run_id, lambda run_id: None)

    result = run_rollback(instance, raise_on_error=False, asset="consolidated_output", partition=PARTITION, version=first_version)

    assert not result.success
    failure = result.failure_data_for_node("set_published_version")
    assert "Nothing changed" in failure.error.message and writer.run_id in failure.error.message
    assert published_bytes("consolidated_output") == before
    assert store().hour_table("consolidated_output").table().version() == table_version
    assert read_rollbacks(data_dir) == []
    assert PartitionLeases(data_dir).holder(PARTITION) == writer.run_id
