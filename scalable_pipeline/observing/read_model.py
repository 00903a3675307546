"""What the Dagster instance and the data root say about a range of hours of one pipeline: one reading
shared by the ``status`` and ``report`` commands and the Prometheus collector.

A pipeline is an entry of the pipelines file (``$SCALABLE_PIPELINE_CONFIG`` or the shipped one): its own
(key-prefixed) assets and gates, its own data root (``pipelines/<name>`` under the root, except the
unprefixed pipeline) and its own runs. Everything comes through public APIs: run records by partition tag,
kept when the run is the pipeline's job, selected its assets or planned them; the newest materialization
of each asset per partition (``fetch_materializations`` with ``AssetRecordsFilter``), the check
executions of every gate (``get_asset_check_execution_history``, mapped to hours by the evaluation's
partition or its run's partition tag: in-op checks carry none), and the rollback log under the data root.
"""

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from scalable_pipeline.assembly.factory import build_pipeline
from scalable_pipeline.core.constants import JOB_NAME, PARTITION_RANGE_TAGS, PARTITION_TAG
from scalable_pipeline.core.metadata import metadata_number
from scalable_pipeline.events.evaluations import evaluation_of
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.pipelines.config import PipelineSpec, config_path, find_spec, load_pipelines
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.rollback_log import RollbackRecord, read_rollbacks
from scalable_pipeline.scaling.history import run_rate
from scalable_pipeline.sources.resource import SyntheticOrderSource

PIPELINE_ASSETS = ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output")
PAGE_SIZE = 1000
PARENT_RUN_TAG = "dagster/parent_run_id"  # set on re-executions (from failure, or of selected steps)


@dataclass(frozen=True)
class ObservedPipeline:
    """One pipeline of the pipelines file as it is read back: its asset keys, gates, data root and hours."""

    name: str
    key_prefix: tuple[str, ...]
    root: Path
    partitions_def: dg.HourlyPartitionsDefinition
    gates: tuple[dg.AssetCheckKey, ...]

    def observe(self, instance: dg.DagsterInstance, partitions: Sequence[str]) -> list["HourRecord"]:
        return observe_hours(instance, self.root, partitions, self.gates, self.key_prefix, self.name)


def configured_pipelines(data_root: Path | str) -> list[ObservedPipeline]:
    """Every pipeline of the pipelines file, in its order, with its data root under ``data_root``."""
    return [observed_pipeline(spec, data_root) for spec in load_pipelines(config_path(os.environ)).pipelines]


def find_pipeline(name: str, data_root: Path | str) -> ObservedPipeline:
    """The pipeline named ``name`` in the pipelines file (``UnknownPipeline`` names the ones it has)."""

    return observed_pipeline(find_spec(config_path(os.environ), name), data_root)


def observed_pipeline(spec: PipelineSpec, data_root: Path | str) -> ObservedPipeline:
    """``spec`` as it is read back: its gates are those its factory defines."""
    build = PipelineBuild(spec)
    assets = build_pipeline(spec, dg.in_process_executor, SyntheticOrderSource).assets
    gates = sorted({check.key for asset in assets for check in asset.check_specs}, key=dg.AssetCheckKey.to_user_string)
    root = DataStoreResource(data_dir=str(data_root), pipeline=None if build.unprefixed else spec.name).root
    return ObservedPipeline(spec.name, tuple(spec.key_prefix), root, build.partitions_def, tuple(gates))


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


# Runs of several hours are found among this many of the newest runs (their hours are not one tag value).
RANGE_RUNS_SCANNED = 1000


def runs_by_partition(
    instance: dg.DagsterInstance, partitions: Sequence[str], pipeline: str = JOB_NAME, key_prefix: Sequence[str] = ()
) -> dict[str, list[dg.RunRecord]]:
    """The pipeline's runs of one of ``partitions``, newest first: runs of its job, and asset runs (materializations
    from the UI, ``materialize``) of its assets; a run of several hours (a backfill's range, among the newest
    ``RANGE_RUNS_SCANNED`` runs) under each of its hours."""
    found: dict[str, list[dg.RunRecord]] = {key: [] for key in partitions}
    keys = {dg.AssetKey([*key_prefix, asset]) for asset in PIPELINE_ASSETS}
    for record in instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: list(partitions)})):
        if runs_assets(instance, record.dagster_run, pipeline, keys):
            found.setdefault(record.dagster_run.tags[PARTITION_TAG], []).append(record)
    for record in instance.get_run_records(limit=RANGE_RUNS_SCANNED):
        first, last = (record.dagster_run.tags.get(tag) for tag in PARTITION_RANGE_TAGS)
        if first and last and runs_assets(instance, record.dagster_run, pipeline, keys):
            for partition in partitions:
                if first <= partition <= last:  # hour keys sort as their times
                    found[partition].append(record)
    for records in found.values():
        records.sort(key=lambda record: record.create_timestamp, reverse=True)
    return found


def runs_assets(instance: dg.DagsterInstance, run: dg.DagsterRun, pipeline: str, keys: set[dg.AssetKey]) -> bool:
    """Whether ``run`` is the pipeline's: its job, or an asset job that selected (or, unselected, planned) its assets.
    Another named job (another pipeline's, the rollback job) is not."""
    if run.job_name == pipeline:
        return True
    if run.asset_selection:
        return bool(run.asset_selection & keys)
    if not run.job_name.startswith("__"):  # Dagster's implicit asset jobs are named __ASSET_JOB..., __ephemeral...
        return False
    planned = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    return any(record.asset_key in keys for record in planned.records)


def newest_materializations(
    instance: dg.DagsterInstance, asset: str | dg.AssetKey, partitions: Sequence[str]
) -> dict[str, Materialized]:
    """The newest materialization of ``asset`` per partition among ``partitions``."""
    newest: dict[str, Materialized] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_coercible(asset), asset_partitions=list(partitions)),
            limit=PAGE_SIZE,
            cursor=cursor,
        )
        for record in result.records:  # newest first
            materialization = record.asset_materialization
            if record.partition_key and record.partition_key not in newest and materialization:
                values = {key: value.value for key, value in materialization.metadata.items()}
                newest[record.partition_key] = Materialized(record.run_id, record.timestamp, values)
        if not result.has_more or len(newest) == len(partitions):
            return newest
        cursor = result.cursor


def recorded_versions(instance: dg.DagsterInstance, asset: str | dg.AssetKey, partition: str) -> dict[str, int | None]:
    """Every version of ``asset`` for ``partition`` that a materialization recorded (its ``version`` metadata), with
    the ``table_version`` the materialization recorded (None for an asset that is not a Delta table).

    A version is published before its materialization is written, so a run that dies in between (its
    instance full or gone) leaves a published version the instance does not know: the next run of the
    hour publishes and records a new one."""
    versions: dict[str, int | None] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_coercible(asset), asset_partitions=[partition]),
            limit=PAGE_SIZE,
            cursor=cursor,
        )
        for record in result.records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            if "version" in metadata:
                table_version = metadata_number(metadata, "table_version")
                versions[str(metadata["version"].value)] = int(table_version) if table_version is not None else None
        if not result.has_more:
            return versions
        cursor = result.cursor


def publishing_table_version(version: str, recorded: Mapping[str, int | None], rollbacks: Iterable[RollbackRecord]) -> int | None:
    """The table version whose commit published ``version`` last: the newest of the one its materialization
    recorded (``recorded_versions``) and those of the manual rollbacks that restored it."""
    candidates = [recorded.get(version), *(r.table_version for r in rollbacks if r.restored_version == version)]
    return max((candidate for candidate in candidates if candidate is not None), default=None)


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
                        asset=key.asset_key.path[-1],  # the asset's name: the pipeline is known
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


def observe_hours(
    instance: dg.DagsterInstance,
    root: Path | str,
    partitions: Sequence[str],
    gates: Iterable[dg.AssetCheckKey],
    key_prefix: Sequence[str] = (),
    pipeline: str = JOB_NAME,
) -> list[HourRecord]:
    """Runs, newest materializations, newest gate results and rollbacks of each hour in ``partitions`` of the
    pipeline named ``pipeline`` (assets under ``key_prefix``, data under ``root``); assets by their name."""
    hours = {key: HourRecord(key) for key in partitions}
    runs = runs_by_partition(instance, partitions, pipeline, key_prefix)
    for key, records in runs.items():
        if key in hours:
            hours[key].runs = records
    for asset in PIPELINE_ASSETS:
        for key, materialized in newest_materializations(instance, dg.AssetKey([*key_prefix, asset]), partitions).items():
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
