"""rollback_partition: set one asset partition's published version back to an earlier good version.

Launchpad config::

    ops:
      set_published_version:
        config: {asset: consolidated_output, partition: "2026-01-06-10:00", version: v1732...-abcd1234}

With ``pipeline: eu_orders`` it sets that pipeline's asset (its key prefix, its data root
``pipelines/eu_orders``); unset, the unprefixed main pipeline's. The partition must be an hour of that
pipeline's own partitions (from its ``start``).
"""

from collections.abc import Sequence

import dagster as dg
from pydantic import Field, field_validator

from scalable_pipeline.core.paths import InvalidPartitionKey, require_partition_key
from scalable_pipeline.pipelines.config import PipelineSpec, UnknownPipeline, spec_named
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.rollback_log import RollbackRecord
from scalable_pipeline.publishing.rollbacks import record_rollback
from scalable_pipeline.publishing.versioned_store import VersionNotFound
from scalable_pipeline.quality.gate_results import PIPELINE_STAGES

ROLLBACK_JOB_NAME = "rollback_partition"


class RollbackConfig(dg.Config):
    asset: str = Field(description="Asset name (last key component), e.g. consolidated_output.")
    partition: str = Field(description="Partition key, e.g. 2026-01-06-10:00.")
    version: str = Field(description="A version that was published before (see history.jsonl or the rollback log).")
    reason: str = Field(default="manual rollback", description="Why; kept in the rollback record.")
    pipeline: str | None = Field(
        default=None, description="The pipeline whose asset it is (its name in the pipelines file); unset: the unprefixed one."
    )

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


def rollback_target(pipelines: Sequence[PipelineSpec], name: str | None) -> PipelineSpec | None:
    """The pipeline ``name``; unset, the unprefixed one (None when the file has none: the data root's own assets)."""
    if name is None:
        return next((spec for spec in pipelines if not spec.key_prefix), None)
    spec = spec_named(pipelines, name)
    if spec is None:
        raise UnknownPipeline(f"unknown pipeline {name!r}; one of {', '.join(spec.name for spec in pipelines)}")
    return spec


def require_hour(spec: PipelineSpec | None, partition: str) -> str:
    """``partition`` if it is an hour of ``spec``'s own partitions (from its ``start`` to the last complete hour);
    without a pipeline (the data root's own assets), an hourly partition key."""
    if spec is None:
        return require_partition_key(partition)
    return require_partition_key(partition, spec.partitions_def, spec.name)


def target_store(data_store: DataStoreResource, spec: PipelineSpec | None) -> DataStoreResource:
    """The data store of ``spec``: ``data_store`` itself for the unprefixed pipeline, its folder for the others."""
    if spec is None or not spec.key_prefix:
        return data_store
    return DataStoreResource(
        data_dir=data_store.data_dir,
        pipeline=spec.name,
        keep_versions=data_store.keep_versions,
        staging_grace_seconds=data_store.staging_grace_seconds,
        retention_hours=data_store.retention_hours,
    )


def asset_key(spec: PipelineSpec | None, asset: str) -> dg.AssetKey:
    return dg.AssetKey([*(spec.key_prefix if spec else ()), asset])


def build_rollback_partition(pipelines: Sequence[PipelineSpec] = ()) -> dg.JobDefinition:
    """The ``rollback_partition`` job over ``pipelines`` (the entries of the pipelines file)."""

    @dg.op(name="set_published_version")
    def set_published_version(context: dg.OpExecutionContext, config: RollbackConfig, data_store: DataStoreResource) -> str:
        """Point readers at ``config.version``; a version that does not exist (or never passed its gates) changes nothing.

        Takes the partition's lease first (released when it is done), so no pipeline run writes the partition meanwhile.
        """
        try:
            spec = rollback_target(pipelines, config.pipeline)
            require_hour(spec, config.partition)
        except (UnknownPipeline, InvalidPartitionKey) as error:
            raise dg.Failure(description=f"Nothing changed: {error}", allow_retries=False) from error
        store = target_store(data_store, spec)
        store.hold_partition(context, config.partition)
        try:
            return set_version(context, config, store, asset_key(spec, config.asset))
        finally:
            store.release_partition(context, config.partition)

    @dg.job(
        name=ROLLBACK_JOB_NAME,
        description="Set a partition's published version back to an earlier good version (recorded); any pipeline's.",
    )
    def rollback_partition():
        set_published_version()

    return rollback_partition


def set_version(
    context: dg.OpExecutionContext, config: RollbackConfig, data_store: DataStoreResource, key: dg.AssetKey | None = None
) -> str:
    store = data_store.store()
    try:
        target = store.version(config.asset, config.partition, config.version)
    except VersionNotFound as error:
        raise dg.Failure(description=f"Nothing changed: {error}", allow_retries=False) from error
    current = store.published(config.asset, config.partition)
    if current and current.version == target.version:
        raise dg.Failure(description=f"Nothing changed: {target.version} is already the published version.", allow_retries=False)
    restored = store.publish(target, context.run.run_id, action="rollback")
    record = RollbackRecord(
        kind="manual",
        asset=config.asset,
        partition=config.partition,
        run_id=context.run.run_id,
        restored_version=target.version,
        replaced_version=current.version if current else None,
        cause_asset=config.asset,
        reason=config.reason,
        table_version=restored.table_version,
    )
    record_rollback(context, store.root, record, key)
    context.log.info(f"{config.asset} {config.partition}: readers now get {target.version} (was {record.replaced_version})")
    return target.version


# The job over the unprefixed pipeline alone; the definitions build it over every pipeline of the pipelines file.
rollback_partition = build_rollback_partition()
