"""quality_gate_alerts: one alert per failed asset check evaluation, to a webhook and a local log.

Dagster OSS sends no alert when a check fails and run-failure sensors do not fire for it
(dagster#29896), so this sensor reads the asset check executions of its code location after its cursor
(``alerts/cursor.py``). Each tick: put every new failed evaluation in the outbox, advance the cursor,
deliver what is due. Ticks may overlap (``dagster sensor preview`` while the daemon ticks): the outbox
delivers each alert once whatever the number of tickers. It launches no runs and only writes under the
data root, so it is on by default (RUNNING); without ``SCALABLE_PIPELINE_ALERT_WEBHOOK`` it writes the
alerts log only. A tick that alerts nothing logs nothing: its summary is the skip reason (``tick_log.py``).
"""

import os
import time
from collections.abc import Callable

import dagster as dg

from scalable_pipeline.core.tick_log import log_tick
from scalable_pipeline.events.cursor import parse_cursor
from scalable_pipeline.events.delivery import deliver, delivery_acted
from scalable_pipeline.events.evaluations import failed_alerts, repository_check_keys, scan_executions
from scalable_pipeline.events.outbox import DeliveryPolicy, Outbox
from scalable_pipeline.publishing.data_store import DataStoreResource

SENSOR_NAME = "quality_gate_alerts"
INTERVAL_ENV = "SCALABLE_PIPELINE_ALERT_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 30
# Time for webhook POSTs in one tick, well inside the 60 s a sensor evaluation may take.
DELIVERY_BUDGET_SECONDS = 20.0
# A claim older than this was left by a crashed tick (a tick holds claims well under a minute).
CLAIM_TIMEOUT_SECONDS = 300.0


def build_quality_gate_alerts(
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    backoff_base_seconds: float = DEFAULT_INTERVAL_SECONDS,
    backoff_cap_seconds: float = 3600.0,
    initial_lookback_seconds: float = 24 * 3600.0,
    claim_timeout_seconds: float = CLAIM_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """The sensor; ``initial_lookback_seconds`` bounds how far back its first tick (no cursor) looks."""
    policy = DeliveryPolicy(backoff_base_seconds, backoff_cap_seconds, DELIVERY_BUDGET_SECONDS, claim_timeout_seconds)

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One alert per failed asset check evaluation: webhook (SCALABLE_PIPELINE_ALERT_WEBHOOK) "
        "and <data root>/logs/alerts.jsonl, through a durable outbox with retries.",
    )
    def quality_gate_alerts(context: dg.SensorEvaluationContext, data_store: DataStoreResource) -> dg.SensorResult:
        now = clock()
        cursor, previous_version = parse_cursor(context.cursor)
        if context.repository_def is None:
            raise dg.DagsterInvariantViolationError(f"{SENSOR_NAME} reads the checks of its code location and needs it")
        check_keys = repository_check_keys(context.repository_def)
        scan = scan_executions(context.instance, check_keys, cursor, since=now - initial_lookback_seconds)
        outbox = Outbox(data_store.root)
        alerts = failed_alerts(context.instance, scan.evaluated)
        if previous_version:  # its alerts have other ids: recognise them by run, check and evaluation time
            known = outbox.evaluation_keys()
            alerts = [alert for alert in alerts if alert.evaluation_key not in known]
        added = sum(outbox.add(alert, now) for alert in alerts)

        delivery, delivered = deliver(outbox, now, policy)
        summary = f"{len(scan.evaluated)} evaluations read, {added} new alerts; {delivered}"
        log_tick(context.log, summary, acted=added > 0 or delivery_acted(delivery), failed=delivery.failed > 0)
        return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=scan.cursor.to_json())

    return quality_gate_alerts


def alert_interval_seconds() -> int:
    """Seconds between alert ticks (and the first retry of a failed webhook POST)."""
    return int(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_SECONDS))


quality_gate_alerts = build_quality_gate_alerts(
    minimum_interval_seconds=alert_interval_seconds(), backoff_base_seconds=alert_interval_seconds()
)
