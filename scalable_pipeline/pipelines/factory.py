"""One pipeline entry -> its four assets with their checks, its job (named after it), its schedule, its resources."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from scalable_pipeline.assets.chunk_partitions import build_chunk_partitions
from scalable_pipeline.assets.consolidated_output import build_consolidated_output
from scalable_pipeline.assets.processing_paths import build_processed_chunks
from scalable_pipeline.assets.raw_volume import build_raw_volume
from scalable_pipeline.decisions.partition_keys import PARTITION_FORMAT, last_ended_hour
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.pipelines.config import SOURCE_KINDS, PipelineSpec
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.resources.scaling import ScalingResource
from scalable_pipeline.resources.source import OrderSource
from scalable_pipeline.storage.io_manager import store_io_manager


@dataclass(frozen=True)
class PipelineDefinitions:
    assets: list[dg.AssetsDefinition]
    job: Any  # what define_asset_job returns (its class is not exported)
    schedules: list[dg.ScheduleDefinition]
    resources: dict


def pipeline_resources(build: PipelineBuild, default_source: Callable[[], OrderSource]) -> dict:
    """The entry's own source, scaling, quality, data store and IO manager, under its resource keys."""
    spec = build.spec
    if spec.source is None:
        source = default_source()
    else:
        settings = dict(spec.source)
        source = SOURCE_KINDS[settings.pop("kind")](**settings)
    resources = {
        "source": source,
        "scaling": ScalingResource(**spec.scaling, pool=build.pool, reserved_pool=build.reserved_pool),
        "quality": QualityResource(**spec.quality),
        "data_store": DataStoreResource(pipeline=None if build.unprefixed else spec.name),
        "versioned_store_io_manager": store_io_manager(build.resource_key("data_store")),
    }
    return {build.resource_key(key): resource for key, resource in resources.items()}


def build_pipeline(
    spec: PipelineSpec, executor_def: dg.ExecutorDefinition, default_source: Callable[[], OrderSource]
) -> PipelineDefinitions:
    build = PipelineBuild(spec)
    assets = [
        build_raw_volume(build),
        build_chunk_partitions(build),
        build_processed_chunks(build),
        build_consolidated_output(build),
    ]
    job = dg.define_asset_job(
        spec.name,
        selection=dg.AssetSelection.groups(build.group),
        executor_def=executor_def,
        tags=build.run_tags,
        description=f"{spec.name}: raw hour -> chunk plan -> processed chunks (by volume: single step, fan-out or "
        "priority fan-out) -> consolidated output.",
    )
    schedules = [hourly_schedule(build, job, spec.schedule)] if spec.schedule else []
    return PipelineDefinitions(assets, job, schedules, pipeline_resources(build, default_source))


def hourly_schedule(build: PipelineBuild, job: Any, cron: str) -> dg.ScheduleDefinition:
    """``<name>_schedule``: at each ``cron`` tick, a run of the last hour that has ended."""

    @dg.schedule(name=f"{build.spec.name}_schedule", cron_schedule=cron, job=job, execution_timezone="UTC")
    def schedule(context: dg.ScheduleEvaluationContext):
        first_hour = datetime.strptime(build.spec.start, PARTITION_FORMAT).replace(tzinfo=timezone.utc)
        partition = last_ended_hour(context.scheduled_execution_time or datetime.now(timezone.utc), first_hour)
        if partition is None:
            return dg.SkipReason(f"no hour of {build.spec.name} has ended yet (first: {build.spec.start})")
        return dg.RunRequest(partition_key=partition)

    return schedule
