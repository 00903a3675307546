"""Every pipeline of a pipelines file with the project's jobs, sensors and shared resources, as one ``Definitions``."""

import functools
import os
from pathlib import Path

import dagster as dg

from scalable_pipeline.assembly.factory import SharedResources, build_pipeline
from scalable_pipeline.assembly.rollback_partition import build_rollback_partition
from scalable_pipeline.assembly.vacuum_tables import build_vacuum_tables
from scalable_pipeline.core.constants import JOB_NAME, LANDING_DIR_ENV
from scalable_pipeline.events.backfill_retries import build_backfill_retries
from scalable_pipeline.events.quality_gate_alerts import alert_interval_seconds, quality_gate_alerts
from scalable_pipeline.events.run_failure_alerts import build_run_failure_alerts
from scalable_pipeline.execution.executors import EXECUTOR_MODE_TAG, pipeline_executor
from scalable_pipeline.faults.resource import FaultInjectionResource
from scalable_pipeline.pipelines.config import config_path, load_pipelines
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.scaling.cgroups import CGROUP_V2_DIR
from scalable_pipeline.scaling.decision import executor_mode
from scalable_pipeline.scaling.machine import Machine
from scalable_pipeline.scaling.resource import CPU_READINGS
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.resource import LandingFileSource, OrderSource, SyntheticOrderSource


def build_source() -> OrderSource:
    """Files from ``$SCALABLE_PIPELINE_LANDING_DIR`` when it is set, else the synthetic generator."""
    landing_dir = os.environ.get(LANDING_DIR_ENV)
    return LandingFileSource(landing_dir=landing_dir) if landing_dir else SyntheticOrderSource()


def shared_resources() -> dict:
    """Resources every pipeline shares; ``data_store`` (the data root) also serves the rollback job and the sensor."""
    return {"faults": FaultInjectionResource(), "circuit_breaker": CircuitBreakerResource(), "data_store": DataStoreResource()}


def build_definitions(pipelines_file: Path) -> dg.Definitions:
    """Every pipeline of ``pipelines_file`` with the project's jobs (rollback, vacuum), sensors and shared resources."""
    machine = Machine(Path(CGROUP_V2_DIR))
    mode = executor_mode(machine.cpus().value)  # the auto executor's, when a run's config names none
    CPU_READINGS.mark(machine)  # a run's first plan reads the CPU use since the definitions loaded: no wait for a sample
    executor = pipeline_executor(mode)  # chosen by SCALABLE_PIPELINE_EXECUTOR, the same for every pipeline
    specs = load_pipelines(pipelines_file).pipelines
    default_source, shared = functools.cache(build_source), SharedResources()  # built once for every entry that uses them
    pipelines = [build_pipeline(spec, executor, default_source, shared, {EXECUTOR_MODE_TAG: mode}) for spec in specs]
    vacuum_job, vacuum_schedule = build_vacuum_tables(specs)
    return dg.Definitions(
        assets=[asset for pipeline in pipelines for asset in pipeline.assets],
        jobs=[*(pipeline.job for pipeline in pipelines), build_rollback_partition(specs), vacuum_job],
        schedules=[*(schedule for pipeline in pipelines for schedule in pipeline.schedules), vacuum_schedule],
        sensors=[
            quality_gate_alerts,
            build_run_failure_alerts(
                {pipeline.job.name: pipeline.job.name for pipeline in pipelines},
                minimum_interval_seconds=alert_interval_seconds(),
                backoff_base_seconds=alert_interval_seconds(),
            ),
            build_backfill_retries([pipeline.job for pipeline in pipelines]),
            *(sensor for pipeline in pipelines for sensor in pipeline.sensors),
        ],
        resources={**shared_resources(), **{key: r for pipeline in pipelines for key, r in pipeline.resources.items()}},
    )


def shipped_definitions() -> dg.Definitions:
    """The definitions of the pipelines file named by the environment, built once per process and file."""
    return definitions_of(config_path(os.environ))


@functools.cache
def definitions_of(pipelines_file: Path) -> dg.Definitions:
    return build_definitions(pipelines_file)


def scalable_data_processing_job() -> dg.JobDefinition:
    """The resolved main job (for ``reconstructable`` and out-of-process execution)."""
    return pipeline_job(JOB_NAME)


def pipeline_job(name: str) -> dg.JobDefinition:
    """The resolved job of pipeline ``name`` (for ``build_reconstructable_job`` and out-of-process execution)."""
    return shipped_definitions().resolve_job_def(name)


def warm_definitions() -> None:
    """Build and resolve every job once and open the instance once, in a process that forks step processes.

    Forked steps inherit the resolved definitions and the instance's imported storage modules (about 0.7 s
    per step otherwise, measured with py-spy on 2 cores); the instance is closed again, so no connection or
    file handle is shared with them.
    """
    shipped_definitions().resolve_all_job_defs()
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get():
            pass
