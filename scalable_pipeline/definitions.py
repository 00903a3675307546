"""Every definition of the project, assembled in one place."""

import os

import dagster as dg

from scalable_pipeline.assets.chunk_partitions import chunk_partitions
from scalable_pipeline.assets.consolidated_output import consolidated_output
from scalable_pipeline.assets.processed_chunks import processed_chunks
from scalable_pipeline.assets.raw_volume import raw_volume
from scalable_pipeline.constants import GROUP_NAME, JOB_NAME, LANDING_DIR_ENV
from scalable_pipeline.jobs.rollback_partition import rollback_partition
from scalable_pipeline.resources.circuit_breaker import CircuitBreakerResource
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.faults import FaultInjectionResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.resources.scaling import ScalingResource
from scalable_pipeline.resources.source import LandingFileSource, OrderSource, SyntheticOrderSource
from scalable_pipeline.sensors.quality_gate_alerts import quality_gate_alerts
from scalable_pipeline.storage.io_manager import versioned_store_io_manager


def parallel_executor_config(config: dict) -> dict:
    """Separate processes per step, forked from a server with the project preloaded (seconds saved per
    step); ``max_concurrent`` (default: CPU count) passes through, and the scaling resource reads it."""
    preloaded = {"start_method": {"forkserver": {"preload_modules": ["scalable_pipeline.step_process"]}}}
    return {**preloaded, **({"max_concurrent": config["max_concurrent"]} if config.get("max_concurrent") else {})}


parallel_executor = dg.multiprocess_executor.configured(
    parallel_executor_config,
    config_schema={"max_concurrent": dg.Field(int, is_required=False, description="Steps at once (default: CPU count).")},
)

scalable_data_processing = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP_NAME),
    executor_def=parallel_executor,
    description="Raw hour -> chunk plan -> processed chunks (fan-out/fan-in) -> consolidated output.",
)

scalable_data_processing_schedule = dg.build_schedule_from_partitioned_job(scalable_data_processing)


def build_source() -> OrderSource:
    """Files from ``$SCALABLE_PIPELINE_LANDING_DIR`` when it is set, else the synthetic generator."""
    landing_dir = os.environ.get(LANDING_DIR_ENV)
    return LandingFileSource(landing_dir=landing_dir) if landing_dir else SyntheticOrderSource()


def build_resources() -> dict:
    return {
        "source": build_source(),
        "scaling": ScalingResource(),
        "quality": QualityResource(),
        "data_store": DataStoreResource(),
        "versioned_store_io_manager": versioned_store_io_manager,
        "faults": FaultInjectionResource(),
        "circuit_breaker": CircuitBreakerResource(),
    }


defs = dg.Definitions(
    assets=[raw_volume, chunk_partitions, processed_chunks, consolidated_output],
    jobs=[scalable_data_processing, rollback_partition],
    schedules=[scalable_data_processing_schedule],
    sensors=[quality_gate_alerts],
    resources=build_resources(),
)


def scalable_data_processing_job() -> dg.JobDefinition:
    """The resolved main job (for ``reconstructable`` and out-of-process execution)."""
    return defs.resolve_job_def(JOB_NAME)
