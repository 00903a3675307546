"""Deferral for pipelines launched by the clock: ``<pipeline>_schedule`` and ``<pipeline>_deferred_hours``.

At each tick the schedule requests the last hour that has ended, unless the source's circuit is open
(``on_source_outage: defer``): then it records the hour in ``deferred_hours/<pipeline>.json`` and skips,
naming the reason. The sensor launches the recorded hours once the circuit is closed; when the circuit's
cool-down is over it first makes the trial call itself, the source's cheap ``check_available`` (a
mounted folder, a database that answers) through the breaker: success closes the circuit and the hours
are launched in that tick.
"""

import time
from collections.abc import Callable
from datetime import datetime, timezone

import dagster as dg

from scalable_pipeline.core.constants import DEFAULT_START
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT, last_ended_hour
from scalable_pipeline.sources.circuit_breaker_store import CircuitOpenError
from scalable_pipeline.sources.deferral import DEFER, LAUNCH, PROBE, OutageMode, deferral
from scalable_pipeline.sources.deferred_hours_store import DeferredHours
from scalable_pipeline.sources.source_outage import BREAKER_KEY, pipeline_resources

DEFERRED_TAG = "scalable_pipeline/deferred_at"


def build_deferring_schedule(
    pipeline: str,
    job_name: str,
    cron: str = "0 * * * *",
    on_source_outage: OutageMode = "defer",
    circuit: str = "source",
    data_store_key: str = "data_store",
    first_hour: str = DEFAULT_START,
    clock: Callable[[], float] = time.time,
) -> dg.ScheduleDefinition:
    """``<pipeline>_schedule``: at each ``cron`` tick, the last hour that has ended, or its deferral."""

    @dg.schedule(
        name=f"{pipeline}_schedule",
        cron_schedule=cron,
        job_name=job_name,
        execution_timezone="UTC",
        required_resource_keys={data_store_key, BREAKER_KEY},
        description=f"The last hour that has ended; deferred (see {pipeline}_deferred_hours) while the source's circuit is open.",
    )
    def schedule(context: dg.ScheduleEvaluationContext, **_resources) -> dg.RunRequest | dg.SkipReason:
        at = context.scheduled_execution_time or datetime.now(timezone.utc)
        partition = last_ended_hour(at, datetime.strptime(first_hour, PARTITION_FORMAT).replace(tzinfo=timezone.utc))
        if partition is None:
            return dg.SkipReason(f"no hour of {pipeline} has ended yet (first: {first_hour})")
        data_store, breakers = pipeline_resources(context, data_store_key)
        now = clock()
        decision = deferral(on_source_outage, circuit, breakers.breaker(circuit, data_store).state(), now, breakers.settings)
        if decision.action == LAUNCH:
            return dg.RunRequest(partition_key=partition)
        DeferredHours(data_store.root, pipeline).add(partition, now)
        return dg.SkipReason(f"hour {partition} deferred: {decision.reason}")

    return schedule


def build_deferred_hours_sensor(
    pipeline: str,
    job_name: str,
    source_key: str = "source",
    circuit: str = "source",
    data_store_key: str = "data_store",
    minimum_interval_seconds: int = 30,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """``<pipeline>_deferred_hours``: launches the hours its schedule deferred once the circuit closes."""

    @dg.sensor(
        name=f"{pipeline}_deferred_hours",
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={source_key, data_store_key, BREAKER_KEY},
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Launches the hours {pipeline}_schedule deferred while the source's circuit was open.",
    )
    def deferred_hours(context: dg.SensorEvaluationContext, **_resources) -> dg.SensorResult | dg.SkipReason:
        data_store, breakers = pipeline_resources(context, data_store_key)
        hours = DeferredHours(data_store.root, pipeline)
        waiting = hours.all()
        if not waiting:
            return dg.SkipReason("no deferred hours")
        breaker = breakers.breaker(circuit, data_store)
        decision = deferral("defer", circuit, breaker.state(), clock(), breakers.settings)
        if decision.action == PROBE:
            try:
                breaker.call(getattr(context.resources, source_key).check_available)
            except (OSError, CircuitOpenError) as error:
                return dg.SkipReason(f"{len(waiting)} hour(s) still deferred: the trial call failed: {error}")
        elif decision.action == DEFER:
            return dg.SkipReason(f"{len(waiting)} hour(s) deferred: {decision.reason}")
        requests = [
            dg.RunRequest(run_key=f"{partition}@deferred-{at}", partition_key=partition, tags={DEFERRED_TAG: str(at)})
            for partition, at in waiting.items()
        ]
        hours.remove(waiting)
        context.log.info(f"circuit '{circuit}' closed: launching {len(requests)} deferred hour(s)")
        return dg.SensorResult(run_requests=requests)

    return deferred_hours
