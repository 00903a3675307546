"""vacuum_tables: retention of the Delta tables (``processed_chunks``, ``consolidated_output``), off the publish path.

Vacuums each table of every pipeline of the pipelines file (``pipeline`` in the op's config: that one alone):
the files a table stopped using more than ``data_store.retention_hours`` ago are deleted, with the versions
they leave without data. Nothing a table version within the window uses, no published version and no staged
version (not in the log) is deleted. Its schedule runs it daily; ``scalable-pipeline vacuum`` runs it now.
"""

from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from scalable_pipeline.assembly.rollback_partition import target_store
from scalable_pipeline.pipelines.config import PipelineSpec, UnknownPipeline, spec_named
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.delta_table import TABLE_ASSETS
from scalable_pipeline.publishing.versioned_store import version_of_file

VACUUM_JOB_NAME = "vacuum_tables"
VACUUM_CRON = "0 3 * * *"  # daily, 03:00 UTC: the window (168 h by default) is days long


class VacuumConfig(dg.Config):
    pipeline: str | None = Field(
        default=None, description="The pipeline whose tables to vacuum (its name in the pipelines file); unset: every pipeline's."
    )


def vacuum_targets(pipelines: Sequence[PipelineSpec], name: str | None) -> list[PipelineSpec | None]:
    """The pipeline ``name``, or every one (None stands for the data root's own tables when the file has none)."""
    if name is None:
        return list(pipelines) or [None]
    spec = spec_named(pipelines, name)
    if spec is None:
        raise UnknownPipeline(f"unknown pipeline {name!r}; one of {', '.join(spec.name for spec in pipelines)}")
    return [spec]


def build_vacuum_tables(pipelines: Sequence[PipelineSpec] = ()) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The ``vacuum_tables`` job over ``pipelines`` (the entries of the pipelines file) and its daily schedule."""

    @dg.op(name="vacuum_delta_tables")
    def vacuum_delta_tables(context: dg.OpExecutionContext, config: VacuumConfig, data_store: DataStoreResource) -> list[dict]:
        """Vacuum each table; one row per pipeline and table: the files and versions deleted."""
        try:
            targets = vacuum_targets(pipelines, config.pipeline)
        except UnknownPipeline as error:
            raise dg.Failure(description=f"Nothing deleted: {error}", allow_retries=False) from error
        rows = []
        for spec in targets:
            store = target_store(data_store, spec).store()
            for asset in TABLE_ASSETS:
                files = store.vacuum_table(asset)
                versions = {version_of_file(file) for file in files}
                name = spec.name if spec else ""
                context.log.info(f"{name} {asset}: {len(files)} file(s) of {len(versions)} version(s) deleted")
                rows.append({"pipeline": name, "asset": asset, "files": len(files), "versions": len(versions)})
        return rows

    @dg.job(name=VACUUM_JOB_NAME, description="Vacuum the Delta tables of every pipeline (retention, off the publish path).")
    def vacuum_tables():
        vacuum_delta_tables()

    schedule = dg.ScheduleDefinition(
        name=f"{VACUUM_JOB_NAME}_schedule",
        job=vacuum_tables,
        cron_schedule=VACUUM_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Vacuums the Delta tables daily (retention_hours of each pipeline's data_store).",
    )
    return vacuum_tables, schedule
