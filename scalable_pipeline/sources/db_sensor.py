"""``<pipeline>_db_sensor``: one run per new load marker in ``<table>_ready`` of a PostgreSQL source.

Each tick reads the markers after its cursor (``decisions/markers.py``) and requests one run of the
marker's hour, run key ``<hour>@<ready_at>``. A marker for an hour that is not a partition is logged and
skipped. While the source's circuit is open (``on_source_outage: defer``) the markers stay unread (the
cursor does not move) and the tick says how many hours wait; they are launched once the circuit closes.
"""

import itertools
import os
import time
from collections.abc import Callable

import dagster as dg
import pandas as pd

from scalable_pipeline.core.constants import DEFAULT_START, PIPELINE_TAG
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.core.tick_log import log_tick
from scalable_pipeline.sources.circuit_breaker_store import CircuitOpenError
from scalable_pipeline.sources.deferral import LAUNCH, OutageMode
from scalable_pipeline.sources.markers import parse_marker_cursor, take_markers
from scalable_pipeline.sources.postgres_tables import Marker, check_table_name
from scalable_pipeline.sources.source_outage import BREAKER_KEY, pipeline_resources, read_source

READY_AT_TAG = "scalable_pipeline/ready_at"
MAX_RUNS_PER_TICK = 1000


def partition_of(marker: Marker, first_hour: str) -> str | None:
    """The hourly partition of the marker's hour; None when it has none (not on the hour, before ``first_hour``)."""
    hour = pd.Timestamp(marker.delivered_hour).tz_convert("UTC")
    first = pd.to_datetime(first_hour, format=PARTITION_FORMAT, utc=True)
    return hour.strftime(PARTITION_FORMAT) if hour == hour.floor("h") and hour >= first else None


def hour_ended(marker: Marker, now: float) -> bool:
    """A marker of an hour still running waits (with every later marker) until its partition exists."""
    return pd.Timestamp(marker.delivered_hour).timestamp() + 3600 <= now


def build_db_sensor(
    pipeline: str,
    job_name: str,
    table: str,
    url_env: str,
    on_source_outage: OutageMode = "defer",
    circuit: str = "source",
    minimum_interval_seconds: int = 30,
    clock: Callable[[], float] = time.time,
    data_store_key: str = "data_store",
    first_hour: str = DEFAULT_START,
) -> dg.SensorDefinition:
    """The marker sensor of ``pipeline`` over ``<table>_ready``, on the server whose URL is in the environment
    variable ``url_env`` (read at each tick, never logged); ``first_hour`` is its first partition, its data
    root the resource ``data_store_key``."""
    check_table_name(table)

    @dg.sensor(
        name=f"{pipeline}_db_sensor",
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={data_store_key, BREAKER_KEY},
        description="One run per new load marker (<table>_ready row) of the PostgreSQL source.",
    )
    def db_sensor(context: dg.SensorEvaluationContext, **_resources) -> dg.SensorResult:
        from scalable_pipeline.sources.postgres_orders import markers_after  # psycopg2 loads only when a tick reads

        data_store, circuit_breaker = pipeline_resources(context, data_store_key)
        url = os.environ.get(url_env)
        if not url:
            return dg.SensorResult(
                skip_reason=f"environment variable {url_env} (the source's URL) is not set", cursor=context.cursor
            )
        cursor, now = parse_marker_cursor(context.cursor), clock()
        try:
            read, decision = read_source(
                circuit_breaker, data_store, circuit, on_source_outage, now, lambda: markers_after(url, table, cursor.read_from())
            )
        except (OSError, CircuitOpenError) as error:
            return dg.SensorResult(skip_reason=f"markers not read: {error}", cursor=context.cursor)
        ended = list(itertools.takewhile(lambda marker: hour_ended(marker, now), read))
        new, after = take_markers(cursor, ended, MAX_RUNS_PER_TICK)
        if decision.action != LAUNCH:
            return dg.SensorResult(skip_reason=f"{len(new)} hour(s) deferred: {decision.reason}", cursor=context.cursor)
        requests = []
        for marker in new:
            partition = partition_of(marker, first_hour)
            if partition is None:
                context.log.warning(f"marker for {marker.delivered_hour} is not an hourly partition of {pipeline}: skipped")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=marker.key,
                    partition_key=partition,
                    tags={PIPELINE_TAG: pipeline, READY_AT_TAG: marker.ready_at.isoformat()},
                )
            )
        summary = f"{len(read)} markers read, {len(requests)} runs requested"
        log_tick(context.log, summary, acted=bool(requests))
        return dg.SensorResult(run_requests=requests, skip_reason=None if requests else summary, cursor=after.to_json())

    return db_sensor
