"""One pipeline entry -> its four assets with their checks, its job (named after it), its schedule, its resources."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dagster as dg

from scalable_pipeline.assembly.sensors import pipeline_sensors
from scalable_pipeline.events.late_hour_alerts import with_freshness
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.pipelines.config import SOURCE_KINDS, PipelineSpec
from scalable_pipeline.processing.chunk_partitions import build_chunk_partitions
from scalable_pipeline.processing.consolidated_output import build_consolidated_output
from scalable_pipeline.processing.io_manager import store_io_manager
from scalable_pipeline.processing.processed_chunks import build_processed_chunks
from scalable_pipeline.processing.raw_volume import build_raw_volume
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline.sources.deferred_hours import build_deferring_schedule
from scalable_pipeline.sources.resource import OrderSource

R = TypeVar("R", bound=dg.ConfigurableResource)


@dataclass(frozen=True)
class PipelineDefinitions:
    assets: list[dg.AssetsDefinition]
    job: Any  # what define_asset_job returns (its class is not exported)
    schedules: list[dg.ScheduleDefinition]
    resources: dict
    sensors: list[dg.SensorDefinition]


@dataclass
class SharedResources:
    """The resources of one definitions build by type and settings: pipelines whose scaling or quality settings
    are equal share one instance (building a ``ConfigurableResource`` infers its config schema, a few ms each)."""

    built: dict[tuple[type, str], Any] = field(default_factory=dict)

    def get(self, resource_type: type[R], **settings: Any) -> R:
        """The ``resource_type`` with ``settings`` (values of the pipelines file, as JSON), built once."""
        key = (resource_type, json.dumps(settings, sort_keys=True))
        if key not in self.built:
            self.built[key] = resource_type(**settings)
        return self.built[key]


def pipeline_resources(build: PipelineBuild, default_source: Callable[[], OrderSource], shared: SharedResources) -> dict:
    """The entry's own source, scaling, quality, data store and IO manager, under its resource keys."""
    spec = build.spec
    if spec.source is None:
        source = default_source()
    else:
        settings = dict(spec.source)
        source = SOURCE_KINDS[settings.pop("kind")](**settings)
    resources = {
        "source": source,
        "scaling": shared.get(ScalingResource, **spec.scaling, pool=build.pool, reserved_pool=build.reserved_pool),
        "quality": shared.get(QualityResource, **spec.quality),
        "data_store": DataStoreResource(pipeline=None if build.unprefixed else spec.name),
        "versioned_store_io_manager": store_io_manager(build.resource_key("data_store")),
    }
    return {build.resource_key(key): resource for key, resource in resources.items()}


def build_pipeline(
    spec: PipelineSpec,
    executor_def: dg.ExecutorDefinition,
    default_source: Callable[[], OrderSource],
    shared: SharedResources | None = None,
    executor_tags: dict[str, str] | None = None,
) -> PipelineDefinitions:
    """The definitions of one pipeline entry; ``shared`` holds what the other entries of the same build share,
    ``executor_tags`` the job's tags of its executor (the auto executor's mode)."""
    build = PipelineBuild(spec)
    assets = [
        build_raw_volume(build),
        build_chunk_partitions(build),
        build_processed_chunks(build),
        with_freshness(build_consolidated_output(build), spec.freshness_minutes)
        if spec.freshness_minutes
        else build_consolidated_output(build),
    ]
    job = dg.define_asset_job(
        spec.name,
        selection=dg.AssetSelection.groups(build.group),
        executor_def=executor_def,
        tags={**build.run_tags, **(executor_tags or {})},
        description=f"{spec.name}: raw hour -> chunk plan -> processed chunks (by volume: single step, fan-out or "
        "priority fan-out) -> consolidated output.",
    )
    schedules = (
        [
            build_deferring_schedule(
                spec.name,
                spec.name,
                spec.schedule,
                spec.on_source_outage,
                data_store_key=build.resource_key("data_store"),
                first_hour=spec.start,
            )
        ]
        if spec.schedule
        else []
    )
    resources = pipeline_resources(build, default_source, shared or SharedResources())
    return PipelineDefinitions(
        assets, job, schedules, resources, pipeline_sensors(build, resources[build.resource_key("source")])
    )
