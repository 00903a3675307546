"""Retention: the last N published-good versions stay (Delta tables: what the vacuum pass's window keeps), older
ones and abandoned staging data go."""

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.definitions import defs
from scalable_pipeline.pipelines.config import CONFIG_ENV
from scalable_pipeline.publishing import versioned_store
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.retention import versions_to_delete
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline_tests.conftest import OFF_PEAK_PARTITION, Crash, materialize_hour

ASSET = "raw_volume"  # kept by count (the Delta tables by vacuum: test_delta_tables)
PARTITION = "2026-01-05-03:00"
SECOND = 1_000_000_000


def v(seconds: int) -> str:
    return f"v{seconds * SECOND}-run{seconds:05d}"


def test_keeps_published_plus_newest_good_versions():
    stored = [v(i) for i in range(1, 8)]
    doomed = versions_to_delete(stored, set(stored), v(7), keep=5, now_ns=100 * SECOND, grace_ns=10 * SECOND)
    assert sorted(doomed) == [v(1), v(2)]


def test_never_deletes_the_published_version_even_when_old():
    stored = [v(i) for i in range(1, 8)]
    doomed = versions_to_delete(stored, set(stored), v(1), keep=3, now_ns=100 * SECOND, grace_ns=10 * SECOND)
    assert v(1) not in doomed and sorted(set(stored) - set(doomed)) == [v(1), v(6), v(7)]


def test_staged_versions_are_deleted_only_after_the_grace_period():
    stored = [v(1), v(50), v(95)]
    doomed = versions_to_delete(stored, {v(1)}, v(1), keep=5, now_ns=100 * SECOND, grace_ns=10 * SECOND)
    assert doomed == [v(50)]


def publish_frames(store: VersionedStore, count: int) -> list[str]:
    versions = []
    for i in range(count):
        stored = store.write_table(ASSET, PARTITION, pd.DataFrame({"order_id": [i]}), f"run{i:05d}")
        store.publish(stored, f"run{i:05d}")
        versions.append(stored.version)
    return versions


def test_store_keeps_exactly_n_versions(tmp_path):
    store = VersionedStore(tmp_path, keep_versions=5)
    versions = publish_frames(store, 8)
    assert store.versions(ASSET, PARTITION) == versions[-5:]
    assert store.require_published(ASSET, PARTITION).version == versions[-1]
    assert [change["version"] for change in store.history(ASSET, PARTITION)] == versions


def test_crash_between_history_line_and_pointer_swap_keeps_the_version_good(tmp_path, monkeypatch):
    """publish dies after logging the change, before swapping the pointer: the version stays usable and kept."""
    store = VersionedStore(tmp_path, keep_versions=5, staging_grace_seconds=0)
    [first] = publish_frames(store, 1)
    crashed = store.write_table(ASSET, PARTITION, pd.DataFrame({"order_id": [9]}), "crashed")

    def dying_write(path, document):
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(versioned_store, "atomic_write_json", dying_write)
        with pytest.raises(Crash):
            store.publish(crashed, "crashed")

    assert store.require_published(ASSET, PARTITION).version == first  # readers never saw it
    assert store.version(ASSET, PARTITION, crashed.version) == crashed  # a rollback target
    assert store.clean(ASSET, PARTITION) == []  # good, so not swept as stale staging
    store.publish(store.version(ASSET, PARTITION, crashed.version), "manual", action="rollback")
    assert store.read_published_table(ASSET, PARTITION)["order_id"].tolist() == [9]


def test_published_version_missing_from_the_history_is_still_good(tmp_path):
    """A pointer whose history line is missing (written by an older publish order) still names a good version."""
    store = VersionedStore(tmp_path, keep_versions=1, staging_grace_seconds=0)
    [published] = publish_frames(store, 1)
    (store.partition_dir(ASSET, PARTITION) / "history.jsonl").unlink()

    assert store.good_versions(ASSET, PARTITION) == [published]
    assert store.version(ASSET, PARTITION, published).version == published


def test_abandoned_staging_is_cleaned_on_the_next_publish(tmp_path):
    store = VersionedStore(tmp_path, keep_versions=5, staging_grace_seconds=0)
    abandoned = store.write_table(ASSET, PARTITION, pd.DataFrame({"order_id": [1]}), "crashed")
    publish_frames(store, 1)
    assert not Path(abandoned.path).exists()
    assert len(store.versions(ASSET, PARTITION)) == 1


TWO_PIPELINES = """
pipelines:
  - name: scalable_data_processing
    key_prefix: []
    start: "2026-01-01-00:00"
  - name: eu_orders
    start: "2026-01-02-00:00"
"""


def test_the_vacuum_job_vacuums_the_tables_of_the_pipeline_it_names_or_of_every_one(tmp_path, monkeypatch, data_dir):
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(TWO_PIPELINES))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    stores = {
        "scalable_data_processing": VersionedStore(data_dir),
        "eu_orders": VersionedStore(data_dir / "pipelines" / "eu_orders"),
    }
    versions = {}
    for name, store in stores.items():
        for n in (1, 2):
            frame = pd.DataFrame({"order_id": [n]})
            store.publish(store.write_table("consolidated_output", PARTITION, frame, f"run{n}", "digest"))
        staged = store.write_table("consolidated_output", PARTITION, pd.DataFrame({"order_id": [3]}), "auditing", "digest")
        versions[name] = store.versions("consolidated_output", PARTITION)
        assert len(versions[name]) == 3 and versions[name][-1] == staged.version
    job = build_definitions(path).resolve_job_def("vacuum_tables")

    def vacuum(pipeline: str | None) -> list[tuple]:
        result = job.execute_in_process(
            run_config={"ops": {"vacuum_delta_tables": {"config": {"pipeline": pipeline}}}},
            resources={"data_store": DataStoreResource(retention_hours=0)},
        )
        return [
            (row["pipeline"], row["asset"], row["files"], row["versions"])
            for row in result.output_for_node("vacuum_delta_tables")
        ]

    assert vacuum("eu_orders") == [("eu_orders", "processed_chunks", 0, 0), ("eu_orders", "consolidated_output", 1, 1)]
    assert stores["eu_orders"].versions("consolidated_output", PARTITION) == versions["eu_orders"][1:]  # the staged one stays
    assert stores["scalable_data_processing"].versions("consolidated_output", PARTITION) == versions["scalable_data_processing"]
    assert vacuum(None) == [
        ("scalable_data_processing", "processed_chunks", 0, 0),
        ("scalable_data_processing", "consolidated_output", 1, 1),
        ("eu_orders", "processed_chunks", 0, 0),
        ("eu_orders", "consolidated_output", 0, 0),
    ]
    assert (
        stores["scalable_data_processing"].versions("consolidated_output", PARTITION) == versions["scalable_data_processing"][1:]
    )


@pytest.mark.slow
def test_pipeline_keeps_exactly_n_versions_and_prunes_old_plans(instance, data_dir):
    data_store = DataStoreResource(keep_versions=2, retention_hours=0)
    for chunk_count in (2, 3, 4):
        materialize_hour(OFF_PEAK_PARTITION, instance, data_store=data_store, scaling=ScalingResource(chunk_count=chunk_count))
    vacuum = defs.resolve_job_def("vacuum_tables").execute_in_process(resources={"data_store": data_store}, instance=instance)
    # each table: the versions of the two earlier runs
    assert [(row["asset"], row["versions"]) for row in vacuum.output_for_node("vacuum_delta_tables")] == [
        ("processed_chunks", 2),
        ("consolidated_output", 2),
    ]

    store = data_store.store()
    for asset, kept in (("raw_volume", 2), ("chunk_partitions", 2), ("processed_chunks", 1), ("consolidated_output", 1)):
        versions = store.versions(asset, OFF_PEAK_PARTITION)
        assert len(versions) == kept, asset  # the Delta tables: vacuum with a zero window keeps only what the table uses
        assert store.require_published(asset, OFF_PEAK_PARTITION).version == versions[-1]
    plan = store.read_published_document("chunk_partitions", OFF_PEAK_PARTITION)
    plan_dirs = [d.name for d in (data_dir / "checkpoints" / OFF_PEAK_PARTITION.replace(":", "")).iterdir()]
    assert plan_dirs == [plan["fingerprint"]]
