"""run_failure_alerts: one alert per run that failed for good, through the gate alerts' outbox and webhook.

Each tick reads the failed runs updated since its cursor (``alerts/run_failures.py``), skips attempts
that Dagster will retry (``decisions/run_alerts.py``), puts one alert per remaining run in the outbox
(id ``run-failure-<run id>``: any number of tickers add it once) and delivers what is due, retrying
through a webhook outage. It launches no runs, so it is on by default. A tick that alerts nothing logs
nothing: its summary is the skip reason (``tick_log.py``).
"""

import time
from collections.abc import Callable, Mapping

import dagster as dg

from scalable_pipeline.core.tick_log import log_tick
from scalable_pipeline.events.delivery import deliver, delivery_acted
from scalable_pipeline.events.outbox import DeliveryPolicy, Outbox
from scalable_pipeline.events.quality_gate_alerts import CLAIM_TIMEOUT_SECONDS, DEFAULT_INTERVAL_SECONDS, DELIVERY_BUDGET_SECONDS
from scalable_pipeline.events.run_alerts import ALERT, WAIT, retry_verdict
from scalable_pipeline.events.run_failures import (
    LAG_SECONDS,
    RunCursor,
    failed_run_records,
    failure_alert,
    parse_run_cursor,
    pipeline_of,
)
from scalable_pipeline.publishing.data_store import DataStoreResource

SENSOR_NAME = "run_failure_alerts"
# How long a failed run whose retry is due may wait for it before its failure alerts after all.
RETRY_GRACE_SECONDS = 600.0


def build_run_failure_alerts(
    pipelines_by_job: Mapping[str, str],
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    backoff_base_seconds: float = DEFAULT_INTERVAL_SECONDS,
    backoff_cap_seconds: float = 3600.0,
    initial_lookback_seconds: float = 24 * 3600.0,
    retry_grace_seconds: float = RETRY_GRACE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """The sensor; ``pipelines_by_job`` names the pipeline of each job (runs tagged by a sensor carry it)."""
    policy = DeliveryPolicy(backoff_base_seconds, backoff_cap_seconds, DELIVERY_BUDGET_SECONDS, CLAIM_TIMEOUT_SECONDS)
    by_job = dict(pipelines_by_job)

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One alert per run that failed for good (not for attempts that are retried): pipeline, partition, "
        "run, failed step, first line of the error; webhook and <data root>/logs/alerts.jsonl.",
    )
    def run_failure_alerts(context: dg.SensorEvaluationContext, data_store: DataStoreResource) -> dg.SensorResult:
        now = clock()
        cursor = parse_run_cursor(context.cursor, start=now - initial_lookback_seconds)
        records = failed_run_records(context.instance, cursor)
        waiting_ids = [run_id for run_id in cursor.waiting if run_id not in {r.dagster_run.run_id for r in records}]
        if waiting_ids:
            records += context.instance.get_run_records(dg.RunsFilter(run_ids=waiting_ids))
        outbox = Outbox(data_store.root)
        added, waiting = 0, {}
        for record in records:
            run = record.dagster_run
            failed_at = record.end_time or record.update_timestamp.timestamp()
            verdict = retry_verdict(run.tags, failed_at, now, retry_grace_seconds)
            if verdict == WAIT:
                waiting[run.run_id] = failed_at
            elif verdict == ALERT:
                note = "a retry was due but none was launched" if run.tags.get("dagster/will_retry") == "true" else ""
                alert = failure_alert(context.instance, record, pipeline_of(run, context.repository_def, by_job), note)
                added += outbox.add(alert, now)
        after = max([cursor.after, *(record.update_timestamp.timestamp() for record in records)])
        recent = {
            run_id: stamp
            for run_id, stamp in [
                *cursor.recent.items(),
                *((r.dagster_run.run_id, r.update_timestamp.timestamp()) for r in records),
            ]
            if stamp > after - LAG_SECONDS
        }
        delivery, delivered = deliver(outbox, now, policy)
        summary = f"{len(records)} failed runs read, {added} new alerts, {len(waiting)} waiting for a retry; {delivered}"
        log_tick(context.log, summary, acted=added > 0 or delivery_acted(delivery), failed=delivery.failed > 0)
        return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=RunCursor(after, recent, waiting).to_json())

    return run_failure_alerts
