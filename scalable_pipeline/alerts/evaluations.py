"""Reading asset check evaluations from the Dagster instance, in storage-id order, after a cursor.

On the default run-sharded SQLite storage, ``get_event_records`` reads each run's own shard: ids repeat
across runs and a plain storage-id cursor is refused. Check evaluations are also mirrored into the
index shard with instance-wide ids, so we read them there (the base SQL implementation does that).
PostgreSQL and consolidated SQLite storages have one table and take the ordinary route.
"""

from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from scalable_pipeline.alerts.messages import Alert
from scalable_pipeline.constants import PARTITION_RANGE_TAGS, PARTITION_TAG


def check_evaluation_records(
    instance: dg.DagsterInstance, after_storage_id: int | None, after_timestamp: float | None, limit: int
) -> Sequence[dg.EventLogRecord]:
    """Up to ``limit`` ASSET_CHECK_EVALUATION records with a storage id above ``after_storage_id``, oldest first."""
    records_filter = dg.EventRecordsFilter(
        event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        after_cursor=after_storage_id,
        after_timestamp=after_timestamp,
    )
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        return SqlEventLogStorage.get_event_records(storage, records_filter, limit=limit, ascending=True)
    return storage.get_event_records(records_filter, limit=limit, ascending=True)


def run_partition(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The partition (or ``start...end`` range) a run targeted, from its tags."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    if PARTITION_TAG in run.tags:
        return run.tags[PARTITION_TAG]
    start, end = (run.tags.get(tag) for tag in PARTITION_RANGE_TAGS)
    return f"{start}...{end}" if start and end else None


def _metadata_number(evaluation: dg.AssetCheckEvaluation, key: str) -> float | None:
    value = evaluation.metadata.get(key)
    raw = getattr(value, "value", None)
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None


def failed_alerts(instance: dg.DagsterInstance, records: Sequence[dg.EventLogRecord]) -> list[Alert]:
    """One alert per failed evaluation among ``records``; passed evaluations produce none.

    In-op checks of a partitioned asset carry no partition on the evaluation (dagster 1.13), so the
    partition comes from the run's tags when the evaluation has none.
    """
    alerts, partitions = [], {}
    for record in records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        if not evaluation.partition and entry.run_id not in partitions:
            partitions[entry.run_id] = run_partition(instance, entry.run_id)
        alerts.append(
            Alert(
                storage_id=record.storage_id,
                run_id=entry.run_id,
                asset=evaluation.asset_key.to_user_string(),
                partition=evaluation.partition or partitions[entry.run_id],
                check=evaluation.check_name,
                severity=evaluation.severity.value,
                score=_metadata_number(evaluation, "score"),
                threshold=_metadata_number(evaluation, "threshold"),
                description=evaluation.description,
                evaluated_at=entry.timestamp,
            )
        )
    return alerts
