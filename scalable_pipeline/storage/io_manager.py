"""IO manager over the versioned store: loads the published version of an asset partition.

Every asset op writes, audits and publishes its own output (write-audit-publish) and returns the
``StoredVersion`` reference; storing it only records where it went. The data root comes from the
run's ``data_store`` resource, so a data root set in run config reaches loading too.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from scalable_pipeline.decisions.chunk_plan import ChunkPlan
from scalable_pipeline.storage.atomic import read_json
from scalable_pipeline.storage.versioned_store import StoredVersion

DOCUMENT_TYPES = {"ChunkPlan": ChunkPlan}


class VersionedStoreIOManager(dg.IOManager):
    """Tables as Parquet, documents as JSON, always the published version."""

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if not isinstance(obj, StoredVersion):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: return the StoredVersion your op published, not a {type(obj).__name__}"
            )
        context.add_output_metadata({"version": obj.version, "path": dg.MetadataValue.path(obj.path)})

    def load_input(self, context: dg.InputContext):
        store = context.resources.data_store.store()
        if not context.has_asset_partitions:
            raise dg.DagsterInvariantViolationError(f"{context.asset_key.to_user_string()} is stored per partition")
        asset, partition = context.asset_key.path[-1], context.asset_partition_key
        stored = store.require_published(asset, partition)
        if stored.path.endswith(".parquet"):
            return pd.read_parquet(stored.path)
        document = read_json(Path(stored.path))
        document_type = DOCUMENT_TYPES.get(document.get("type", ""))
        return document_type.from_json(document) if document_type else document


@dg.io_manager(required_resource_keys={"data_store"})
def versioned_store_io_manager(_context) -> VersionedStoreIOManager:
    return VersionedStoreIOManager()
