"""What the Dagster instance and the data root say about a range of hours: one reading shared by the
``status`` and ``report`` commands and the Prometheus collector.

Everything comes through public APIs: run records by partition tag, the newest materialization of each
asset per partition (``fetch_materializations`` with ``AssetRecordsFilter``), the check executions of
every gate (``get_asset_check_execution_history``, mapped to hours by the evaluation's partition or its
run's partition tag: in-op checks carry none), and the rollback log under the data root.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from scalable_pipeline.alerts.evaluations import evaluation_of
from scalable_pipeline.constants import PARTITION_TAG
from scalable_pipeline.metadata import metadata_number
from scalable_pipeline.storage.rollback_log import RollbackRecord, read_rollbacks

PIPELINE_ASSETS = ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output")
PAGE_SIZE = 1000
PARENT_RUN_TAG = "dagster/parent_run_id"  # set on re-executions (from failure, or of selected steps)


@dataclass(frozen=True)
class GateResult:
    """The newest evaluation of one gate for one hour."""

    asset: str
    check: str
    partition: str
    run_id: str
    passed: bool
    severity: str
    score: float | None
    threshold: float | None
    description: str
    at: float


@dataclass(frozen=True)
class Materialized:
    """The newest materialization of one asset for one hour: its run, time and metadata values."""

    run_id: str
    at: float
    metadata: dict


@dataclass
class HourRecord:
    partition: str
    assets: dict[str, Materialized] = field(default_factory=dict)
    gates: dict[str, GateResult] = field(default_factory=dict)  # by check name
    runs: list[dg.RunRecord] = field(default_factory=list)  # newest first
    rollbacks: list[RollbackRecord] = field(default_factory=list)

    def value(self, asset: str, key: str) -> float | None:
        """A number from the newest materialization of ``asset`` (None when absent)."""
        found = self.assets.get(asset)
        value = found.metadata.get(key) if found else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def reexecutions(self) -> int:
        """Runs of the hour that re-executed an earlier run (a restart from failure or of selected steps)."""
        return sum(PARENT_RUN_TAG in record.dagster_run.tags for record in self.runs)

    def end_to_end_records_per_second(self) -> float | None:
        """Raw records over the wall time of the run that produced the newest output (start to end of that run)."""
        output, records = self.assets.get("consolidated_output"), self.value("raw_volume", "total_records")
        run = next((r for r in self.runs if output and r.dagster_run.run_id == output.run_id), None)
        return run_rate(records, run)


def run_rate(records: float | None, run: dg.RunRecord | None) -> float | None:
    """``records`` per second of the run's wall time (start to end); None unless the run has ended."""
    if run is None or records is None or not run.start_time or not run.end_time or run.end_time <= run.start_time:
        return None
    return records / (run.end_time - run.start_time)


def end_to_end_rates(instance: dg.DagsterInstance, limit: int = 10) -> list[float]:
    """End-to-end records/s of the runs behind the last ``limit`` outputs: their ``raw_records`` over the run's wall time."""
    outputs = instance.fetch_materializations(dg.AssetKey("consolidated_output"), limit=limit).records
    if not outputs:
        return []
    runs = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=[o.run_id for o in outputs]))}
    rates = []
    for output in outputs:
        materialization = output.asset_materialization
        rate = run_rate(
            metadata_number(materialization.metadata if materialization else None, "raw_records"), runs.get(output.run_id)
        )
        rates += [] if rate is None else [rate]
    return rates


def runs_by_partition(instance: dg.DagsterInstance, partitions: Sequence[str]) -> dict[str, list[dg.RunRecord]]:
    """Every run tagged with one of ``partitions`` (the main job, or materializations from the UI), newest first."""
    found: dict[str, list[dg.RunRecord]] = {key: [] for key in partitions}
    for record in instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: list(partitions)})):
        found.setdefault(record.dagster_run.tags[PARTITION_TAG], []).append(record)
    return found


def newest_materializations(instance: dg.DagsterInstance, asset: str, partitions: Sequence[str]) -> dict[str, Materialized]:
    """The newest materialization of ``asset`` per partition among ``partitions``."""
    newest: dict[str, Materialized] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=list(partitions)), limit=PAGE_SIZE, cursor=cursor
        )
        for record in result.records:  # newest first
            materialization = record.asset_materialization
            if record.partition_key and record.partition_key not in newest and materialization:
                values = {key: value.value for key, value in materialization.metadata.items()}
                newest[record.partition_key] = Materialized(record.run_id, record.timestamp, values)
        if not result.has_more or len(newest) == len(partitions):
            return newest
        cursor = result.cursor


def gate_results(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], run_partitions: Mapping[str, str], since: float
) -> dict[tuple[str, str], GateResult]:
    """The newest evaluation per (partition, check) among runs of ``run_partitions`` (run id -> partition);
    executions created before ``since`` (the first of those runs started) are not read."""
    newest: dict[tuple[str, str], GateResult] = {}
    for key in check_keys:
        before = None
        while True:
            page = instance.event_log_storage.get_asset_check_execution_history(key, limit=PAGE_SIZE, cursor=before)
            for execution in page:
                evaluation = evaluation_of(execution)
                if evaluation is None:
                    continue
                partition = evaluation.partition or execution.partition or run_partitions.get(execution.run_id)
                if partition is not None and (partition, key.name) not in newest:
                    newest[(partition, key.name)] = GateResult(
                        asset=key.asset_key.to_user_string(),
                        check=key.name,
                        partition=partition,
                        run_id=execution.run_id,
                        passed=evaluation.passed,
                        severity=evaluation.severity.value,
                        score=metadata_number(evaluation.metadata, "score"),
                        threshold=metadata_number(evaluation.metadata, "threshold"),
                        description=evaluation.description or "",
                        at=execution.event.timestamp if execution.event else execution.create_timestamp,
                    )
            if len(page) < PAGE_SIZE or page[-1].create_timestamp < since:
                break
            before = page[-1].id
    return newest


def check_keys() -> list[dg.AssetCheckKey]:
    """Every gate of the pipeline (from the definitions)."""
    from scalable_pipeline.alerts.evaluations import repository_check_keys
    from scalable_pipeline.definitions import defs

    return repository_check_keys(defs.get_repository_def())


def observe_hours(
    instance: dg.DagsterInstance, root: Path | str, partitions: Sequence[str], gates: Iterable[dg.AssetCheckKey]
) -> list[HourRecord]:
    """Runs, newest materializations, newest gate results and rollbacks of each hour in ``partitions``."""
    hours = {key: HourRecord(key) for key in partitions}
    runs = runs_by_partition(instance, partitions)
    for key, records in runs.items():
        if key in hours:
            hours[key].runs = records
    for asset in PIPELINE_ASSETS:
        for key, materialized in newest_materializations(instance, asset, partitions).items():
            hours[key].assets[asset] = materialized
    run_partitions = {record.dagster_run.run_id: key for key, records in runs.items() for record in records}
    starts = [record.create_timestamp.timestamp() for records in runs.values() for record in records]
    for (key, check), result in gate_results(instance, gates, run_partitions, min(starts, default=0.0)).items():
        if key in hours:
            hours[key].gates[check] = result
    for rollback in read_rollbacks(root):
        if rollback.partition in hours:
            hours[rollback.partition].rollbacks.append(rollback)
    return [hours[key] for key in partitions]
