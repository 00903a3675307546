"""Recording rollbacks where users look: an asset observation in Dagster and a line in the rollback log."""

import dagster as dg

from scalable_pipeline.core.asset_keys import StepContext, step_asset_key
from scalable_pipeline.publishing.rollback_log import RollbackRecord, append_rollback


def record_rollback(context: StepContext, root, record: RollbackRecord, asset_key: dg.AssetKey | None = None) -> None:
    """The observation goes on ``asset_key`` (default: the record's asset under the step's own key prefix)."""
    metadata = {**record.as_metadata(), "failed_gates": dg.MetadataValue.json(record.failed_gates)}
    context.log_event(
        dg.AssetObservation(
            asset_key=asset_key or step_asset_key(context, record.asset),
            partition=record.partition,
            description=f"{record.kind} rollback: readers get version {record.restored_version or '(none)'}",
            metadata=metadata,
        )
    )
    append_rollback(root, record)
