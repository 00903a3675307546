"""IO manager over the versioned store: writes and publishes outputs, loads the published version."""

import dagster as dg
import pandas as pd

from scalable_pipeline.decisions.chunk_plan import ChunkPlan
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.storage.versioned_store import StoredVersion

DOCUMENT_TYPES = {"ChunkPlan": ChunkPlan}


class VersionedStoreIOManager(dg.ConfigurableIOManager):
    """Tables as Parquet, documents as JSON; an output already published by its op is only recorded."""

    data_store: dg.ResourceDependency[DataStoreResource]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        store = self.data_store.store()
        asset, partition = _asset_partition(context)
        if isinstance(obj, StoredVersion):
            stored = obj
        elif isinstance(obj, pd.DataFrame):
            stored = store.write_table(asset, partition, obj, context.run_id)
            store.publish(stored, context.run_id)
        elif isinstance(obj, ChunkPlan):
            stored = store.write_document(asset, partition, obj.to_json(), context.run_id)
            store.publish(stored, context.run_id)
        else:
            raise TypeError(f"{asset}: cannot store a {type(obj).__name__}")
        context.add_output_metadata({"version": stored.version, "path": dg.MetadataValue.path(stored.path)})

    def load_input(self, context: dg.InputContext):
        store = self.data_store.store()
        asset, partition = _asset_partition(context)
        stored = store.require_published(asset, partition)
        if stored.path.endswith(".parquet"):
            return pd.read_parquet(stored.path)
        document = store.read_published_document(asset, partition)
        document_type = DOCUMENT_TYPES.get(document.get("type", ""))
        return document_type.from_json(document) if document_type else document


def _asset_partition(context) -> tuple[str, str]:
    if not context.has_asset_partitions:
        raise dg.DagsterInvariantViolationError(f"{context.asset_key.to_user_string()} is stored per partition")
    return context.asset_key.path[-1], context.asset_partition_key
