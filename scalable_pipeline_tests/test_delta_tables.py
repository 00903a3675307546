"""The published hours as Delta tables: any engine reads them from the path alone; write-audit-publish,
rollback, time travel, concurrent hours and vacuum on the table's own log."""

import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import duckdb_extension_delta
import pandas as pd
import polars as pl
import pytest
from deltalake import DeltaTable

from scalable_pipeline.definitions import defs
from scalable_pipeline.observing.read_model import publishing_table_version, recorded_versions
from scalable_pipeline.publishing import delta_table
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.delta_table import HourTable
from scalable_pipeline.publishing.rollback_log import RollbackRecord, read_rollbacks
from scalable_pipeline.publishing.versioned_store import StoredVersion, VersionedStore, VersionNotFound, dataset_parts
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests.conftest import OFF_PEAK_PARTITION, materialization_metadata, materialize_hour
from scalable_pipeline_tests.test_pipeline import expected_from_raw
from scalable_pipeline_tests.test_rollback import run_rollback

NEXT_HOUR = "2026-01-05-04:00"
DELTA_EXTENSION = next((Path(duckdb_extension_delta.__file__).parent / "extensions").glob("*/delta.duckdb_extension"))


# DuckDB reads in a process of its own, as a separate reader would: the delta extension's threads can abort
# the interpreter at exit ("terminate called without an active exception", a few exits in a hundred here)
# when polars and deltalake are loaded in the same process, and that would be the test run's exit.
DUCKDB_READ = """
import sys, duckdb
connection = duckdb.connect(config={"allow_unsigned_extensions": "true"})
connection.execute(f"LOAD '{sys.argv[1]}'")
query = f"SELECT * EXCLUDE (partition) FROM delta_scan('{sys.argv[2]}') WHERE partition = ? ORDER BY order_id"
connection.execute(query, [sys.argv[3]]).to_arrow_table().to_pandas().to_parquet(sys.argv[4])
"""


def duckdb_hour(table: Path, partition: str) -> pd.DataFrame:
    """DuckDB with the delta extension of its PyPI package (loaded by path: nothing downloaded)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "hour.parquet"
        command = [sys.executable, "-c", DUCKDB_READ, str(DELTA_EXTENSION), str(table), partition, str(out)]
        subprocess.run(command, check=True, capture_output=True)
        return pd.read_parquet(out)


def polars_hour(table: Path, partition: str, version: int | None = None) -> pd.DataFrame:
    hour = pl.read_delta(str(table), version=version).filter(pl.col("partition") == partition)
    return hour.drop("partition").sort("order_id").to_pandas()


def deltalake_hour(table: Path, partition: str, version: int | None = None) -> pd.DataFrame:
    hour = DeltaTable(table, version=version).to_pandas(filters=[("partition", "=", partition)])
    return hour.drop(columns="partition").sort_values("order_id").reset_index(drop=True)


READERS = {"duckdb": duckdb_hour, "polars": polars_hour, "deltalake": deltalake_hour}


def assert_same_records(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values column by column (engines differ in dtypes: nullable vs numpy, time zone spelling)."""
    actual, expected = actual.reset_index(drop=True), expected.reset_index(drop=True)
    assert list(actual.columns) == list(expected.columns)
    for column in expected.columns:
        left, right = actual[column], expected[column]
        if column == "event_time":
            left, right = pd.to_datetime(left, utc=True), pd.to_datetime(right, utc=True)
        assert (
            left.astype(object).where(left.notna(), None).tolist() == right.astype(object).where(right.notna(), None).tolist()
        ), column


def table_path(data_dir: Path, asset: str = "consolidated_output") -> Path:
    return data_dir / "tables" / asset


@pytest.mark.slow
def test_each_engine_reads_exactly_the_published_hours(instance, data_dir):
    for hour in (OFF_PEAK_PARTITION, NEXT_HOUR):
        assert materialize_hour(hour, instance).success

    for hour in (OFF_PEAK_PARTITION, NEXT_HOUR):
        raw = defs.load_asset_value("raw_volume", partition_key=hour, instance=instance)
        expected = expected_from_raw(raw, hour)["valid"]
        for name, read in READERS.items():
            assert_same_records(read(table_path(data_dir), hour), expected), name
        processed = deltalake_hour(table_path(data_dir, "processed_chunks"), hour)
        assert sorted(processed["raw_row"]) == list(range(len(raw)))  # every raw record once, rejected ones included
    hours = pl.read_delta(str(table_path(data_dir)))["partition"].unique().sort().to_list()
    assert hours == [OFF_PEAK_PARTITION, NEXT_HOUR]


@pytest.mark.slow
def test_a_failed_gate_moves_no_table_version_and_no_reader(instance, data_dir):
    assert materialize_hour(OFF_PEAK_PARTITION, instance).success
    tables = {asset: HourTable(table_path(data_dir, asset)) for asset in ("processed_chunks", "consolidated_output")}
    before_versions = {asset: table.table().version() for asset, table in tables.items()}
    before = {name: read(table_path(data_dir), OFF_PEAK_PARTITION) for name, read in READERS.items()}

    bad = materialize_hour(OFF_PEAK_PARTITION, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.0))

    assert not bad.success
    assert {asset: table.table().version() for asset, table in tables.items()} == before_versions
    for name, read in READERS.items():
        pd.testing.assert_frame_equal(read(table_path(data_dir), OFF_PEAK_PARTITION), before[name])


@pytest.mark.slow
def test_rollback_and_republish_are_in_the_table_history_and_time_travel_returns_the_earlier_hour(instance, data_dir):
    table = table_path(data_dir)
    first_run = materialize_hour(OFF_PEAK_PARTITION, instance)
    first_table_version = DeltaTable(table).version()
    assert materialization_metadata(first_run, "consolidated_output")["table_version"] == first_table_version
    first = deltalake_hour(table, OFF_PEAK_PARTITION)
    first_version = DataStoreResource().store().require_published("consolidated_output", OFF_PEAK_PARTITION).version
    materialize_hour(OFF_PEAK_PARTITION, instance, source=SyntheticOrderSource(seed=7))
    second = deltalake_hour(table, OFF_PEAK_PARTITION)
    assert not second.equals(first)

    assert run_rollback(instance, asset="consolidated_output", partition=OFF_PEAK_PARTITION, version=first_version).success
    pd.testing.assert_frame_equal(deltalake_hour(table, OFF_PEAK_PARTITION), first)
    assert read_rollbacks(data_dir)[-1].table_version == DeltaTable(table).version()  # the rollback's own commit
    materialize_hour(OFF_PEAK_PARTITION, instance, source=SyntheticOrderSource(seed=7))  # re-publish the second feed

    actions = [(commit.get("action"), commit.get("published_version")) for commit in reversed(DeltaTable(table).history())]
    assert [action for action, _ in actions if action] == ["publish", "publish", "rollback", "publish"]
    assert actions[-2] == ("rollback", first_version)
    assert_same_records(deltalake_hour(table, OFF_PEAK_PARTITION), second)
    for read in (deltalake_hour, polars_hour):  # time travel: the table as it was after the first publish
        pd.testing.assert_frame_equal(
            read(table, OFF_PEAK_PARTITION, first_table_version), read(table, OFF_PEAK_PARTITION, first_table_version)
        )
        assert_same_records(read(table, OFF_PEAK_PARTITION, first_table_version), first)


def stage_hour(store: VersionedStore, partition: str, order_ids: list[int], run_id: str):
    return store.write_table("consolidated_output", partition, pd.DataFrame({"order_id": order_ids}), run_id, "digest")


def commit_of(table: Path, version: str) -> int:
    """The table version of the one commit that published the store's ``version`` (the whole history, read by a test)."""
    [commit] = [c["version"] for c in DeltaTable(table).history() if c.get("published_version") == version]
    return commit


def commit_other_hour(store: VersionedStore, commits: int) -> None:
    """``commits`` commits of another hour, as other runs make them, alternating between two versions of it."""
    versions = [stage_hour(store, "2026-01-05-01:00", [n], f"other{n}") for n in (0, 1)]
    for n in range(commits):
        store.hour_table("consolidated_output").replace_hour(
            "2026-01-05-01:00", dataset_parts(versions[n % 2].path), {"published_version": versions[n % 2].version}
        )


def test_publish_returns_the_version_of_its_own_commit_when_another_hour_commits_right_after(tmp_path, monkeypatch):
    store = VersionedStore(tmp_path)
    store.publish(stage_hour(store, OFF_PEAK_PARTITION, [1], "first"))
    staged = stage_hour(store, OFF_PEAK_PARTITION, [2], "second")
    commit = DeltaTable.create_write_transaction
    others: list[int] = []

    def commit_then_another_hour(table, *args, **kwargs):
        commit(table, *args, **kwargs)
        if not others:  # once, and not for the other hour's own commit
            others.append(1)
            commit_other_hour(store, 1)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_another_hour)
    published = store.publish(staged)

    path = store.hour_table("consolidated_output").path
    assert published == replace(staged, table_version=commit_of(path, staged.version))
    assert DeltaTable(path).version() == published.table_version + 1  # the other hour's commit came after it
    assert deltalake_hour(path, OFF_PEAK_PARTITION, published.table_version)["order_id"].tolist() == [2]


@pytest.mark.slow
def test_the_materialization_records_its_commit_however_many_commits_land_before_it(instance, data_dir, monkeypatch):
    """More commits of other hours land between the publish and its materialization than any look-back would read."""
    publish = VersionedStore.publish

    def publish_then_a_busy_table(store, stored, run_id="", action="publish"):
        published = publish(store, stored, run_id, action)
        if stored.asset == "consolidated_output":
            commit_other_hour(store, 101)
        return published

    monkeypatch.setattr(VersionedStore, "publish", publish_then_a_busy_table)
    result = materialize_hour(OFF_PEAK_PARTITION, instance)

    metadata = materialization_metadata(result, "consolidated_output")
    table = table_path(data_dir)
    assert metadata["table_version"] == commit_of(table, metadata["version"]) == DeltaTable(table).version() - 101
    recorded = recorded_versions(instance, "consolidated_output", OFF_PEAK_PARTITION)
    assert publishing_table_version(metadata["version"], recorded, []) == metadata["table_version"]


def test_the_table_version_of_a_version_is_that_of_its_newest_publish_or_manual_rollback():
    def rollback(restored: str, table_version: int | None) -> RollbackRecord:
        return RollbackRecord(
            "manual",
            "consolidated_output",
            OFF_PEAK_PARTITION,
            "run",
            restored,
            None,
            "consolidated_output",
            table_version=table_version,
        )

    recorded = {"v1": 3, "v2": 5, "raw": None}
    assert publishing_table_version("v1", recorded, []) == 3
    assert publishing_table_version("v1", recorded, [rollback("v1", 8), rollback("v2", 9), rollback("v1", 6)]) == 8
    assert publishing_table_version("v3", recorded, [rollback("v3", 7)]) == 7  # restored, its run not recorded
    assert publishing_table_version("raw", recorded, [rollback("raw", None)]) is None
    assert publishing_table_version("v9", recorded, []) is None


def test_a_staged_version_is_in_the_table_folder_and_no_reader_sees_it(tmp_path):
    store = VersionedStore(tmp_path)
    store.publish(stage_hour(store, OFF_PEAK_PARTITION, [1], "published"))
    staged = stage_hour(store, OFF_PEAK_PARTITION, [2], "auditing")

    assert Path(staged.path).is_relative_to(store.hour_table("consolidated_output").path)
    for name, read in READERS.items():
        assert read(store.hour_table("consolidated_output").path, OFF_PEAK_PARTITION)["order_id"].tolist() == [1], name


def test_two_hours_published_at_once_both_land(tmp_path, monkeypatch):
    """Both writers read the same table version before either commits: one commit conflicts and is retried."""
    store = VersionedStore(tmp_path)
    for hour in ("2026-01-05-01:00", OFF_PEAK_PARTITION, NEXT_HOUR):
        store.publish(stage_hour(store, hour, [0], "first"))
    staged = [stage_hour(store, hour, [n], f"run{n}") for n, hour in enumerate((OFF_PEAK_PARTITION, NEXT_HOUR), start=1)]
    both_opened = threading.Barrier(2)
    open_table = HourTable.open_or_create
    attempts: list[str] = []

    def open_together(self, schema):
        table = open_table(self, schema)
        attempts.append(threading.current_thread().name)
        if attempts.count(threading.current_thread().name) == 1:
            both_opened.wait(timeout=30)
        return table

    monkeypatch.setattr(HourTable, "open_or_create", open_together)
    published: list[StoredVersion] = []
    threads = [
        threading.Thread(target=lambda v=version: published.append(store.publish(v)), name=version.partition)
        for version in staged
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(attempts) == 3  # two first attempts, one retry
    hours = (
        deltalake_hour(store.hour_table("consolidated_output").path, OFF_PEAK_PARTITION),
        deltalake_hour(store.hour_table("consolidated_output").path, NEXT_HOUR),
    )
    assert [hour["order_id"].tolist() for hour in hours] == [[1], [2]]
    assert DeltaTable(store.hour_table("consolidated_output").path).to_pandas()["order_id"].sort_values().tolist() == [0, 1, 2]
    path = store.hour_table("consolidated_output").path
    assert sorted(p.table_version for p in published) == [4, 5]  # each publish knows its own commit: the retried one too
    assert all(p.table_version == commit_of(path, p.version) for p in published)


def test_vacuum_keeps_the_files_rollback_and_time_travel_need_within_its_window(tmp_path):
    store = VersionedStore(tmp_path, retention_hours=1)
    first = stage_hour(store, OFF_PEAK_PARTITION, [1], "first")
    store.publish(first)
    first_table_version = DeltaTable(store.hour_table("consolidated_output").path).version()
    store.publish(stage_hour(store, OFF_PEAK_PARTITION, [2], "second"))

    assert store.vacuum_table("consolidated_output") == []  # the first is within the window
    assert Path(first.path).exists()
    assert deltalake_hour(store.hour_table("consolidated_output").path, OFF_PEAK_PARTITION, first_table_version)[
        "order_id"
    ].tolist() == [1]
    store.publish(store.version("consolidated_output", OFF_PEAK_PARTITION, first.version), action="rollback")
    assert store.read_published_table("consolidated_output", OFF_PEAK_PARTITION)["order_id"].tolist() == [1]
    assert deltalake_hour(store.hour_table("consolidated_output").path, OFF_PEAK_PARTITION)["order_id"].tolist() == [1]


def test_vacuum_past_its_window_deletes_unused_files_and_never_the_published_ones(tmp_path):
    store = VersionedStore(tmp_path, retention_hours=0)
    first = stage_hour(store, OFF_PEAK_PARTITION, [1], "first")
    store.publish(first)
    second = stage_hour(store, OFF_PEAK_PARTITION, [2], "second")
    store.publish(second)
    assert Path(first.path).exists()  # publishing vacuums nothing: the vacuum pass does

    table = store.hour_table("consolidated_output").path
    assert store.vacuum_table("consolidated_output") == [str(Path(first.path).relative_to(table))]
    assert not Path(first.path).exists() and Path(second.path).exists()
    assert store.versions("consolidated_output", OFF_PEAK_PARTITION) == [second.version]  # the emptied version is gone
    with pytest.raises(VersionNotFound):
        store.version("consolidated_output", OFF_PEAK_PARTITION, first.version)
    assert deltalake_hour(store.hour_table("consolidated_output").path, OFF_PEAK_PARTITION)["order_id"].tolist() == [2]


def test_vacuum_never_deletes_a_staged_version_whatever_its_window_and_age(tmp_path):
    """A version a run is still auditing is not in the log: vacuum never lists it, however old it is."""
    store = VersionedStore(tmp_path, retention_hours=0, staging_grace_seconds=0)
    for n in (1, 2):
        store.publish(stage_hour(store, NEXT_HOUR, [n], f"other{n}"))
    store.publish(stage_hour(store, OFF_PEAK_PARTITION, [1], "published"))
    staged = stage_hour(store, OFF_PEAK_PARTITION, [2], "auditing")

    assert len(store.vacuum_table("consolidated_output")) == 1  # the other hour's first version
    assert store.versions("consolidated_output", OFF_PEAK_PARTITION) == [
        store.require_published("consolidated_output", OFF_PEAK_PARTITION).version,
        staged.version,
    ]
    assert store.read_published_table("consolidated_output", OFF_PEAK_PARTITION)["order_id"].tolist() == [1]
    assert pd.read_parquet(staged.path)["order_id"].tolist() == [2]
    assert store.publish(staged).table_version == DeltaTable(store.hour_table("consolidated_output").path).version()


def test_the_table_folder_of_an_hour_is_the_delta_writers_one():
    assert delta_table.hive_dirname(OFF_PEAK_PARTITION) == "partition=2026-01-05-03%3A00"
