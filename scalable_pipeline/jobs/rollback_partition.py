"""rollback_partition: set one asset partition's published version back to an earlier good version.

Launchpad config::

    ops:
      set_published_version:
        config: {asset: consolidated_output, partition: "2024-01-02-10:00", version: v1732...-abcd1234}
"""

import dagster as dg
from pydantic import Field

from scalable_pipeline.resources.data_store import DataStoreResource, run_status
from scalable_pipeline.rollbacks import record_rollback
from scalable_pipeline.storage.partition_lease import PartitionBusyError, PartitionLeases
from scalable_pipeline.storage.rollback_log import RollbackRecord
from scalable_pipeline.storage.versioned_store import VersionNotFound

ROLLBACK_JOB_NAME = "rollback_partition"


class RollbackConfig(dg.Config):
    asset: str = Field(description="Asset name (last key component), e.g. consolidated_output.")
    partition: str = Field(description="Partition key, e.g. 2024-01-02-10:00.")
    version: str = Field(description="A version that was published before (see history.jsonl or the rollback log).")
    reason: str = Field(default="manual rollback", description="Why; kept in the rollback record.")


@dg.op
def set_published_version(context: dg.OpExecutionContext, config: RollbackConfig, data_store: DataStoreResource) -> str:
    """Point readers at ``config.version``; a version that does not exist (or never passed its gates) changes nothing.

    Takes the partition's lease first (held until this run ends), so no pipeline run writes the partition meanwhile.
    """
    try:
        PartitionLeases(data_store.root).acquire(
            config.partition, context.run.run_id, lambda run_id: run_status(context.instance, run_id)
        )
    except PartitionBusyError as error:
        raise dg.Failure(description=f"Nothing changed: {error}", allow_retries=False) from error
    store = data_store.store()
    try:
        target = store.version(config.asset, config.partition, config.version)
    except VersionNotFound as error:
        raise dg.Failure(description=f"Nothing changed: {error}", allow_retries=False) from error
    current = store.published(config.asset, config.partition)
    if current and current.version == target.version:
        raise dg.Failure(description=f"Nothing changed: {target.version} is already the published version.", allow_retries=False)
    store.publish(target, context.run.run_id, action="rollback")
    record = RollbackRecord(
        kind="manual",
        asset=config.asset,
        partition=config.partition,
        run_id=context.run.run_id,
        restored_version=target.version,
        replaced_version=current.version if current else None,
        cause_asset=config.asset,
        reason=config.reason,
    )
    record_rollback(context, store.root, record)
    context.log.info(f"{config.asset} {config.partition}: readers now get {target.version} (was {record.replaced_version})")
    return target.version


@dg.job(name=ROLLBACK_JOB_NAME, description="Set a partition's published version back to an earlier good version (recorded).")
def rollback_partition():
    set_published_version()
