"""IO manager over the versioned store: every stage loads exactly the version its upstream produced.

Each asset op writes, audits and publishes its own output (write-audit-publish) and returns the
``StoredVersion`` it published; ``handle_output`` records it (``version``, ``path``, ``raw_digest``; for a
Delta table also ``table`` and ``table_version``, the version of the commit that published it, as ``publish``
returned it) in the materialization's metadata. ``load_input`` finds that record in the run that produced
the upstream output (this run, or the parent run of a re-execution), so a stage never picks up a version
another run published in between. Reads from outside a run (``load_asset_value``) get the published version.

An input annotated ``StoredVersion`` receives the reference; any other input receives the data (a
pandas DataFrame for tables, the typed document for JSON documents such as the chunk plan).
"""

from pathlib import Path

import dagster as dg

from scalable_pipeline.core.atomic import read_json
from scalable_pipeline.processing.chunk_plan import ChunkPlan
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


def recorded_version(instance: dg.DagsterInstance, run_id: str, asset_key: dg.AssetKey, partition: str) -> str | None:
    """The ``version`` that run ``run_id`` recorded for the asset partition it materialized."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in reversed(records):
        materialization = record.asset_materialization
        if materialization and materialization.asset_key == asset_key and materialization.partition == partition:
            version = materialization.metadata.get("version")
            return str(version.value) if version is not None else None
    return None


class VersionedStoreIOManager(dg.IOManager):
    """Tables as Parquet, documents as JSON; loads the version of the run lineage, else the published one."""

    def __init__(self, data_store_key: str = "data_store"):
        self.data_store_key = data_store_key

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if not isinstance(obj, StoredVersion):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: return the StoredVersion your op published, not a {type(obj).__name__}"
            )
        metadata: dict[str, dg.MetadataValue] = {
            "version": dg.MetadataValue.text(obj.version),
            "path": dg.MetadataValue.path(obj.path),
            "raw_digest": dg.MetadataValue.text(obj.raw_digest),
        }
        if obj.asset in TABLE_ASSETS:
            table = getattr(context.resources, self.data_store_key).store().hour_table(obj.asset)
            metadata["table"] = dg.MetadataValue.path(str(table.path))
        if obj.table_version is not None:
            metadata["table_version"] = dg.MetadataValue.int(obj.table_version)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext):
        if not context.has_asset_partitions:
            raise dg.DagsterInvariantViolationError(f"{context.asset_key.to_user_string()} is stored per partition")
        stored = self.version_for(context, getattr(context.resources, self.data_store_key).store())
        return stored if context.dagster_type.typing_type is StoredVersion else read_stored(stored)

    @staticmethod
    def version_for(context: dg.InputContext, store: VersionedStore) -> StoredVersion:
        asset, partition = context.asset_key.path[-1], context.asset_partition_key
        run_id = producing_run_id(context)
        version = recorded_version(context.instance, run_id, context.asset_key, partition) if run_id else None
        if version is None:
            return store.require_published(asset, partition)
        try:
            return store.stored(asset, partition, version)
        except LookupError as error:
            raise LineageError(
                f"{asset} partition {partition}: run {run_id} produced version {version}, which is no longer stored ({error}). "
                "Launch a new run of the partition instead of re-executing this one."
            ) from error


def store_io_manager(data_store_key: str = "data_store") -> dg.IOManagerDefinition:
    """The IO manager over the versioned store of the ``data_store_key`` resource (a pipeline's own)."""

    @dg.io_manager(required_resource_keys={data_store_key})
    def versioned_store_io_manager(_context) -> VersionedStoreIOManager:
        return VersionedStoreIOManager(data_store_key)

    return versioned_store_io_manager


versioned_store_io_manager = store_io_manager()
