"""IO manager over the versioned store: every stage loads exactly the version its upstream produced.

Each asset op writes, audits and publishes its own output (write-audit-publish) and returns the
``StoredVersion`` it published; ``handle_output`` records it (``version``, ``path``, ``raw_digest``; for a
Delta table also ``table`` and ``table_version``, the version of the commit that published it, as ``publish``
returned it) in the materialization's metadata. ``load_input`` finds that record in the run that produced
the upstream output (this run, or the parent run of a re-execution), so a stage never picks up a version
another run published in between. Reads from outside a run (``load_asset_value``) get the published version.

An input annotated ``HourVersions`` receives the references by hour, ``HourPlans`` the chunk plans by hour
(every hour of the step's partition or range that the run's lineage produced; an hour an upstream step left
out of its range is missing); any other input receives the data of its one hour (a pandas DataFrame for
tables, the typed document for JSON documents such as the chunk plan). A range step's output is its hours'
versions by hour, whose metadata the step records on each hour (``stored_metadata``).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from scalable_pipeline.core.atomic import read_json
from scalable_pipeline.processing.chunk_plan import ChunkPlan
from scalable_pipeline.processing.hours import NOT_PUBLISHED_KEY, HourPlans, HourVersions
from scalable_pipeline.publishing.delta_table import TABLE_ASSETS
from scalable_pipeline.publishing.versioned_store import StoredVersion, VersionedStore, read_table

DOCUMENT_TYPES = {"ChunkPlan": ChunkPlan}


class LineageError(LookupError):
    """The version a run lineage produced is no longer stored."""


def read_stored(stored: StoredVersion):
    """The data of a stored version: a DataFrame for tables, the typed document for JSON documents."""
    if stored.path.endswith(".parquet"):
        return read_table(stored.path).to_pandas()
    document = read_json(Path(stored.path))
    document_type = DOCUMENT_TYPES.get(document.get("type", ""))
    return document_type.from_json(document) if document_type else document


def producing_run_id(context: dg.InputContext) -> str | None:
    """The run whose step produced the upstream output (None when the input comes from outside the run)."""
    upstream = context.upstream_output
    if upstream is None:
        return None
    try:
        return upstream.run_id
    except dg.DagsterInvariantViolationError:  # an asset the run did not produce
        return None


@dataclass(frozen=True)
class RecordedHour:
    """What a run recorded of one hour of an asset: the version it published, or why it published none."""

    version: str | None
    left_out_because: str | None = None


def recorded_hours(instance: dg.DagsterInstance, run_id: str, asset_key: dg.AssetKey) -> dict[str, RecordedHour]:
    """What run ``run_id`` recorded for each partition of the asset it materialized."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=None).records
    hours: dict[str, RecordedHour] = {}
    for record in records:
        materialization = record.asset_materialization
        if materialization and materialization.asset_key == asset_key and materialization.partition:
            metadata = materialization.metadata
            version, why = metadata.get("version"), metadata.get(NOT_PUBLISHED_KEY)
            hours[materialization.partition] = RecordedHour(
                str(version.value) if version is not None else None, str(why.value) if why is not None else None
            )
    return hours


def stored_metadata(store: VersionedStore, stored: StoredVersion) -> dict[str, dg.MetadataValue]:
    """What a materialization records of the version it published: ``version``, ``path``, ``raw_digest``; for a
    Delta table also ``table`` and ``table_version`` (the commit that published it)."""
    metadata: dict[str, dg.MetadataValue] = {
        "version": dg.MetadataValue.text(stored.version),
        "path": dg.MetadataValue.path(stored.path),
        "raw_digest": dg.MetadataValue.text(stored.raw_digest),
    }
    if stored.asset in TABLE_ASSETS:
        metadata["table"] = dg.MetadataValue.path(str(store.hour_table(stored.asset).path))
    if stored.table_version is not None:
        metadata["table_version"] = dg.MetadataValue.int(stored.table_version)
    return metadata


class VersionedStoreIOManager(dg.IOManager):
    """Tables as Parquet, documents as JSON; loads the version of the run lineage, else the published one."""

    def __init__(self, data_store_key: str = "data_store"):
        self.data_store_key = data_store_key

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if isinstance(obj, dict) and all(isinstance(value, StoredVersion) for value in obj.values()):
            return  # a range: the step recorded each hour's metadata on the hour
        if not isinstance(obj, StoredVersion):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: return the StoredVersion your op published, not a {type(obj).__name__}"
            )
        context.add_output_metadata(stored_metadata(getattr(context.resources, self.data_store_key).store(), obj))

    def load_input(self, context: dg.InputContext):
        if not context.has_asset_partitions:
            raise dg.DagsterInvariantViolationError(f"{context.asset_key.to_user_string()} is stored per partition")
        store = getattr(context.resources, self.data_store_key).store()
        wanted = context.dagster_type.typing_type
        run_id = producing_run_id(context)
        recorded = recorded_hours(context.instance, run_id, context.asset_key) if run_id else {}
        if wanted in (HourVersions, HourPlans):
            hours = list(context.asset_partition_keys)
            left_out = {
                hour: recorded[hour].left_out_because or "" for hour in hours if hour in recorded and not recorded[hour].version
            }
            versions = self.versions_for(context, store, [hour for hour in hours if hour not in left_out], run_id, recorded)
            if wanted is HourVersions:
                return HourVersions(versions, left_out)
            return HourPlans({hour: read_stored(stored) for hour, stored in versions.items()}, left_out)
        (stored,) = self.versions_for(context, store, [context.asset_partition_key], run_id, recorded).values()
        return stored if wanted is StoredVersion else read_stored(stored)

    @staticmethod
    def versions_for(
        context: dg.InputContext,
        store: VersionedStore,
        partitions: list[str],
        run_id: str | None,
        recorded: Mapping[str, RecordedHour],
    ) -> dict[str, StoredVersion]:
        """The version of each partition that the run lineage produced (the published one for an input from
        outside the run)."""
        asset = context.asset_key.path[-1]
        versions = {}
        for partition in partitions:
            version = recorded[partition].version if partition in recorded else None
            if version is None:
                versions[partition] = store.require_published(asset, partition)
                continue
            try:
                versions[partition] = store.stored(asset, partition, version)
            except LookupError as error:
                raise LineageError(
                    f"{asset} partition {partition}: run {run_id} produced version {version}, which is no longer stored ({error}). "
                    "Launch a new run of the partition instead of re-executing this one."
                ) from error
        return versions


def store_io_manager(data_store_key: str = "data_store") -> dg.IOManagerDefinition:
    """The IO manager over the versioned store of the ``data_store_key`` resource (a pipeline's own)."""

    @dg.io_manager(required_resource_keys={data_store_key})
    def versioned_store_io_manager(_context) -> VersionedStoreIOManager:
        return VersionedStoreIOManager(data_store_key)

    return versioned_store_io_manager


versioned_store_io_manager = store_io_manager()
