"""The sensors the pipeline factory adds per entry: its data-arrival sensor, chosen by its source, the launcher
of the hours its schedule deferred and its late hours."""

from typing import TYPE_CHECKING

import dagster as dg

from scalable_pipeline.core.constants import DEFAULT_START
from scalable_pipeline.events.late_hour_alerts import build_late_hour_alerts
from scalable_pipeline.sources.db_sensor import build_db_sensor
from scalable_pipeline.sources.deferral import OutageMode
from scalable_pipeline.sources.deferred_hours import build_deferred_hours_sensor
from scalable_pipeline.sources.landing_sensor import LandingRules, build_landing_sensor
from scalable_pipeline.sources.resource import LandingFileSource, OrderSource, PostgresOrderSource

if TYPE_CHECKING:  # the pipelines package imports this module
    from scalable_pipeline.pipelines.build import PipelineBuild


def source_sensors(
    pipeline: str,
    job_name: str,
    source: OrderSource,
    on_source_outage: OutageMode = "defer",
    data_store_key: str = "data_store",
    first_hour: str = DEFAULT_START,
) -> list[dg.SensorDefinition]:
    """``<pipeline>_landing_sensor`` for landing files, ``<pipeline>_db_sensor`` for PostgreSQL (whose URL
    must be a ``dg.EnvVar``: the sensor reads the same variable), none for the synthetic source."""
    if isinstance(source, LandingFileSource):
        rules = LandingRules.of(source, first_hour)
        return [build_landing_sensor(pipeline, job_name, rules, on_source_outage, data_store_key=data_store_key)]
    if isinstance(source, PostgresOrderSource):
        if not isinstance(source.url, dg.EnvVar):
            raise ValueError(f"pipeline {pipeline}: give the PostgreSQL URL as an environment variable (url_env), not inline")
        return [
            build_db_sensor(
                pipeline,
                job_name,
                source.table,
                source.url.env_var_name,
                on_source_outage,
                data_store_key=data_store_key,
                first_hour=first_hour,
            )
        ]
    return []


def pipeline_sensors(build: "PipelineBuild", source: OrderSource) -> list[dg.SensorDefinition]:
    """Every sensor of one pipeline entry: its data-arrival sensor, the launcher of the hours its schedule
    deferred and, with a freshness deadline, its late hours."""
    spec = build.spec
    data_store_key = build.resource_key("data_store")
    sensors = source_sensors(spec.name, spec.name, source, spec.on_source_outage, data_store_key, spec.start)
    if spec.schedule:
        sensors.append(
            build_deferred_hours_sensor(spec.name, spec.name, build.resource_key("source"), data_store_key=data_store_key)
        )
    if spec.freshness_minutes:
        sensors.append(
            build_late_hour_alerts(spec.name, build.key("consolidated_output"), spec.freshness_minutes, first_hour=spec.start)
        )
    return sensors
