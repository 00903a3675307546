"""Reading asset check executions from the Dagster instance, through public APIs only.

``instance.event_log_storage.get_asset_check_execution_history`` returns one record per check execution
(run, check, partition), newest first, with an instance-wide id: the same table on the default run-sharded
SQLite storage (its index shard) and on PostgreSQL. One query for every check's latest id tells which
checks have anything new; only those are paged down to the cursor (``alerts/cursor.py``). A planned
execution is kept open until it is evaluated or its run ends.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dagster as dg

from scalable_pipeline.core.constants import PARTITION_RANGE_TAGS, PARTITION_TAG
from scalable_pipeline.core.metadata import metadata_number
from scalable_pipeline.events.cursor import ExecutionCursor
from scalable_pipeline.events.messages import Alert

# Records per storage query; a check's records are paged down to the cursor.
PAGE_SIZE = 500


class CheckExecution(Protocol):
    """What alerts read from an asset check execution record (its class is not exported by Dagster)."""

    @property
    def key(self) -> dg.AssetCheckKey: ...
    @property
    def id(self) -> int: ...
    @property
    def run_id(self) -> str: ...
    @property
    def event(self) -> dg.EventLogEntry | None: ...
    @property
    def create_timestamp(self) -> float: ...
    @property
    def partition(self) -> str | None: ...


@dataclass(frozen=True)
class Scan:
    evaluated: list[CheckExecution]  # executions evaluated since the cursor, by id
    cursor: ExecutionCursor


def repository_check_keys(repository: dg.RepositoryDefinition) -> list[dg.AssetCheckKey]:
    """Every asset check of the code location: checks inside assets and separate ``@asset_check``s."""
    definitions = [*repository.assets_defs_by_key.values(), *repository.asset_checks_defs_by_key.values()]
    return sorted(
        {spec.key for definition in definitions for spec in definition.check_specs}, key=dg.AssetCheckKey.to_user_string
    )


def evaluation_of(execution: CheckExecution) -> dg.AssetCheckEvaluation | None:
    """The execution's evaluation; None while it is only planned."""
    event = execution.event.dagster_event if execution.event else None
    data = event.event_specific_data if event else None
    return data if isinstance(data, dg.AssetCheckEvaluation) else None


def _executions_above(instance: dg.DagsterInstance, key: dg.AssetCheckKey, above: int, since: float) -> list[CheckExecution]:
    """Executions of ``key`` with an id above ``above``, newest first, paged down to the first created before ``since``."""
    found: list[CheckExecution] = []
    before = None
    while True:
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=PAGE_SIZE, cursor=before)
        page = [execution for execution in history if execution.id > above]
        found += page
        if len(page) < PAGE_SIZE or page[-1].create_timestamp < since:
            return found
        before = page[-1].id


def scan_executions(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], cursor: ExecutionCursor | None, since: float
) -> Scan:
    """Executions evaluated after ``cursor`` (with no cursor: created at or after ``since``), and the next cursor."""
    start = cursor or ExecutionCursor()
    since = since if cursor is None else float("-inf")
    evaluated: list[CheckExecution] = []
    planned: list[CheckExecution] = []
    after = start.after
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(check_keys))
    for key in check_keys:
        check = key.to_user_string()
        if key not in latest or latest[key].id < start.lowest_unread(check):  # nothing new: skip its query
            continue
        for execution in _executions_above(instance, key, start.lowest_unread(check) - 1, since):
            after = max(after, execution.id)
            if start.needs_reading(check, execution.id) and execution.create_timestamp >= since:
                (evaluated if evaluation_of(execution) else planned).append(execution)
    runs = instance.get_runs(dg.RunsFilter(run_ids=list({execution.run_id for execution in planned}))) if planned else []
    running = {run.run_id for run in runs if not run.is_finished}
    still_planned: dict[str, list[int]] = {}
    for execution in planned:
        if execution.run_id in running:
            still_planned.setdefault(execution.key.to_user_string(), []).append(execution.id)
            continue
        # Its run has ended (or is gone): read it once more, now that any evaluation it made is stored.
        again = instance.event_log_storage.get_asset_check_execution_history(execution.key, limit=1, cursor=execution.id + 1)
        if again and again[0].id == execution.id and evaluation_of(again[0]):
            evaluated.append(again[0])
    return Scan(sorted(evaluated, key=lambda execution: execution.id), ExecutionCursor(after, still_planned))


def _run_partition(run: dg.DagsterRun | None) -> str | None:
    """The partition (or ``start...end`` range) a run targeted, from its tags."""
    if run is None:
        return None
    if PARTITION_TAG in run.tags:
        return run.tags[PARTITION_TAG]
    start, end = (run.tags.get(tag) for tag in PARTITION_RANGE_TAGS)
    return f"{start}...{end}" if start and end else None


def failed_alerts(instance: dg.DagsterInstance, executions: Sequence[CheckExecution]) -> list[Alert]:
    """One alert per failed evaluation among ``executions``; passed evaluations produce none.

    In-op checks of a partitioned asset carry no partition on the evaluation nor on the execution record
    (dagster 1.13), so the partition comes from the run's tags when neither has one.
    """
    failed = [(execution, found) for execution in executions if (found := evaluation_of(execution)) and not found.passed]
    untagged = {execution.run_id for execution, found in failed if not (found.partition or execution.partition)}
    runs = {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=list(untagged)))} if untagged else {}
    return [
        Alert(
            execution_id=execution.id,
            run_id=execution.run_id,
            asset=found.asset_key.to_user_string(),
            partition=found.partition or execution.partition or _run_partition(runs.get(execution.run_id)),
            check=found.check_name,
            severity=found.severity.value,
            score=metadata_number(found.metadata, "score"),
            threshold=metadata_number(found.metadata, "threshold"),
            description=found.description,
            evaluated_at=execution.event.timestamp if execution.event else execution.create_timestamp,
        )
        for execution, found in failed
    ]
