"""rollback_partition: set one asset partition's published version back to an earlier good version.

Launchpad config::

    ops:
      set_published_version:
        config: {asset: consolidated_output, partition: "2026-01-06-10:00", version: v1732...-abcd1234}
"""

import dagster as dg
from pydantic import Field, field_validator

from scalable_pipeline.assets.gate_results import PIPELINE_STAGES
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.rollbacks import record_rollback
from scalable_pipeline.storage.paths import require_partition_key
from scalable_pipeline.storage.rollback_log import RollbackRecord
from scalable_pipeline.storage.versioned_store import VersionNotFound

ROLLBACK_JOB_NAME = "rollback_partition"


class RollbackConfig(dg.Config):
    asset: str = Field(description="Asset name (last key component), e.g. consolidated_output.")
    partition: str = Field(description="Partition key, e.g. 2026-01-06-10:00.")
    version: str = Field(description="A version that was published before (see history.jsonl or the rollback log).")
    reason: str = Field(default="manual rollback", description="Why; kept in the rollback record.")

    @field_validator("asset")
    @classmethod
    def known_asset(cls, asset: str) -> str:
        if asset not in PIPELINE_STAGES:
            raise ValueError(f"unknown asset {asset!r}; one of {', '.join(PIPELINE_STAGES)}")
        return asset

    @field_validator("partition")
    @classmethod
    def partition_key(cls, partition: str) -> str:
        return require_partition_key(partition)


@dg.op
def set_published_version(context: dg.OpExecutionContext, config: RollbackConfig, data_store: DataStoreResource) -> str:
    """Point readers at ``config.version``; a version that does not exist (or never passed its gates) changes nothing.

    Takes the partition's lease first (released when it is done), so no pipeline run writes the partition meanwhile.
    """
    data_store.hold_partition(context, config.partition)
    try:
        return set_version(context, config, data_store)
    finally:
        data_store.release_partition(context, config.partition)


def set_version(context: dg.OpExecutionContext, config: RollbackConfig, data_store: DataStoreResource) -> str:
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
