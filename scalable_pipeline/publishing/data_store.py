"""The data root: where every table, checkpoint and log of the pipeline lives, and who may write a partition."""

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pydantic import Field

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.core.constants import DATA_DIR_ENV
from scalable_pipeline.core.paths import InvalidPartitionKey, require_partition_key
from scalable_pipeline.publishing.delta_table import RETENTION_HOURS
from scalable_pipeline.publishing.partition_lease import PartitionBusyError, PartitionLeases
from scalable_pipeline.publishing.versioned_store import KEEP_VERSIONS, STAGING_GRACE_SECONDS, VersionedStore


def default_data_dir() -> Path:
    """``$SCALABLE_PIPELINE_DATA_DIR``, else ``$DAGSTER_HOME/scalable_pipeline_data``."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    dagster_home = os.environ.get("DAGSTER_HOME") or str(Path.cwd() / ".dagster_home")
    return Path(dagster_home) / "scalable_pipeline_data"


# Arrow's own variable naming its allocator: when a deployment sets it, its choice stands.
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_jemalloc(environ: Mapping[str, str] = os.environ) -> bool:
    """Arrow allocates from jemalloc rather than its default mimalloc, where the wheel has it and the environment
    names no allocator: the first chunk of a ~10M-record hour no longer pays about 0.5 s of fresh pages, the
    stages run 8-12% faster, at a 10-14% higher peak (docs/performance.md). True when jemalloc is now the default pool."""
    if environ.get(ARROW_POOL_ENV):
        return False
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow build without jemalloc
        return False
    return True


class DataStoreResource(dg.ConfigurableResource):
    """Versioned tables under one root directory (default from the environment, see docs/configuration.md)."""

    data_dir: str | None = None
    pipeline: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_]+$",
        description="A configured pipeline's own folder under the data root (pipelines/<name>); unset: the root itself.",
    )
    keep_versions: int = Field(
        default=KEEP_VERSIONS,
        ge=1,
        description="Published-good versions kept per partition of raw_volume and chunk_partitions (the published one included).",
    )
    retention_hours: float = Field(
        default=RETENTION_HOURS,
        ge=0,
        description="Delta tables (processed_chunks, consolidated_output): vacuum (the vacuum_tables job) deletes files "
        "the table stopped using more than this many hours ago; time travel and rollback reach back this far.",
    )
    staging_grace_seconds: float = Field(
        default=STAGING_GRACE_SECONDS,
        ge=0,
        description="Age after which a never-published (staged) version counts as abandoned and is deleted.",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        use_jemalloc()  # every process that runs steps sets up this resource before it reads or writes a table

    @property
    def root(self) -> Path:
        base = Path(self.data_dir) if self.data_dir else default_data_dir()
        return base / "pipelines" / self.pipeline if self.pipeline else base

    def store(self) -> VersionedStore:
        return VersionedStore(self.root, self.keep_versions, self.staging_grace_seconds, self.retention_hours)

    def hold_partition(self, context: StepContext, partition: str) -> str:
        """Check ``partition`` is an hour of the step's pipeline and take (or keep) its lease for this run.

        Every step that writes under a partition calls this first: a bad key, an hour outside the
        pipeline's partitions, or a partition another active run is writing, fails the step before
        anything is written (no retry would help).
        """
        try:
            require_partition_key(partition, step_hours(context))
            PartitionLeases(self.root).acquire(partition, context.run.run_id, lambda run_id: run_status(context.instance, run_id))
        except (InvalidPartitionKey, PartitionBusyError) as error:
            raise dg.Failure(description=f"Nothing changed: {error}", allow_retries=False) from error
        return partition

    def release_partition(self, context: StepContext, partition: str) -> None:
        """Give the partition's lease back once this run has written its last output."""
        PartitionLeases(self.root).release(partition, context.run.run_id)


def step_hours(context: StepContext) -> dg.TimeWindowPartitionsDefinition | None:
    """The partitions of the step's asset: its pipeline's hours (None for an op of no asset)."""
    partitions = context.assets_def.partitions_def if context.has_assets_def else None
    return partitions if isinstance(partitions, dg.TimeWindowPartitionsDefinition) else None


def run_status(instance: dg.DagsterInstance, run_id: str) -> str | None:
    run = instance.get_run_by_id(run_id)
    return run.status.value if run else None
