"""quality_gate_alerts: one alert per failed asset check evaluation, to a webhook and a local log.

Dagster OSS sends no alert when a check fails and run-failure sensors do not fire for it
(dagster#29896), so this sensor reads ASSET_CHECK_EVALUATION records after its cursor (a storage id).
Each tick: put every new failed evaluation in the outbox, advance the cursor, deliver what is due.
It launches no runs and only writes under the data root, so it is on by default (RUNNING); without
``SCALABLE_PIPELINE_ALERT_WEBHOOK`` it writes the alerts log only.
"""

import os
import time

import dagster as dg

from scalable_pipeline.alerts.evaluations import check_evaluation_records, failed_alerts
from scalable_pipeline.alerts.outbox import Outbox
from scalable_pipeline.alerts.webhook import WEBHOOK_ENV, post_json
from scalable_pipeline.resources.data_store import DataStoreResource

SENSOR_NAME = "quality_gate_alerts"
INTERVAL_ENV = "SCALABLE_PIPELINE_ALERT_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 30
# Evaluations read per tick; a backlog drains over the following ticks.
RECORDS_PER_TICK = 500
# Time for webhook POSTs in one tick, well inside the 60 s a sensor evaluation may take.
DELIVERY_BUDGET_SECONDS = 20.0


def build_quality_gate_alerts(
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    backoff_base_seconds: float = DEFAULT_INTERVAL_SECONDS,
    backoff_cap_seconds: float = 3600.0,
    initial_lookback_seconds: float = 24 * 3600.0,
) -> dg.SensorDefinition:
    """The sensor; ``initial_lookback_seconds`` bounds how far back its first tick (no cursor) looks."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One alert per failed asset check evaluation: webhook (SCALABLE_PIPELINE_ALERT_WEBHOOK) "
        "and <data root>/logs/alerts.jsonl, through a durable outbox with retries.",
    )
    def quality_gate_alerts(context: dg.SensorEvaluationContext, data_store: DataStoreResource) -> dg.SensorResult:
        now = time.time()
        cursor = int(context.cursor) if context.cursor else None
        records = check_evaluation_records(
            context.instance,
            after_storage_id=cursor,
            after_timestamp=None if cursor is not None else now - initial_lookback_seconds,
            limit=RECORDS_PER_TICK,
        )
        outbox = Outbox(data_store.root)
        alerts = failed_alerts(context.instance, records)
        added = sum(outbox.add(alert, now) for alert in alerts)
        new_cursor = records[-1].storage_id if records else cursor

        url = os.environ.get(WEBHOOK_ENV)
        send = (lambda payload: post_json(url, payload)) if url else None
        delivery = outbox.deliver_due(now, send, backoff_base_seconds, backoff_cap_seconds, DELIVERY_BUDGET_SECONDS)
        summary = (
            f"{len(records)} evaluations read, {added} new alerts; logged {delivery.logged}, delivered {delivery.delivered}, "
            f"failed {delivery.failed}, waiting {delivery.waiting}; webhook {'set' if url else 'not set'}"
        )
        context.log.info(summary)
        return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=str(new_cursor) if new_cursor is not None else None)

    return quality_gate_alerts


_interval = int(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_SECONDS))
quality_gate_alerts = build_quality_gate_alerts(minimum_interval_seconds=_interval, backoff_base_seconds=_interval)
