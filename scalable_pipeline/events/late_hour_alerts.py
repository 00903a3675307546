"""Freshness of a pipeline's output: Dagster's freshness policy on the asset, and one alert per late hour.

``with_freshness`` attaches ``FreshnessPolicy.cron`` to the asset (deadline ``m`` minutes past every
hour, materialized within the ``m`` minutes before it): the UI and the freshness daemon show whether the
asset is fresh. That policy looks at the asset's latest materialization, whatever its partition, so the
alert is judged per partition by ``<pipeline>_late_hours``: each hour once, after its deadline
(``decisions/freshness.py``); an hour not materialized by then gets one alert (id
``late-<pipeline>-<partition>``) through the gate alerts' outbox and webhook. It is off by default: turn
it on with whatever launches the hours (schedule or sensor), or every hour nobody runs is late.
"""

import json
import time
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
import pandas as pd

from scalable_pipeline.core.constants import DEFAULT_START
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.core.tick_log import log_tick
from scalable_pipeline.events.delivery import deliver, delivery_acted
from scalable_pipeline.events.freshness import due_hours, late
from scalable_pipeline.events.messages import LateHourAlert
from scalable_pipeline.events.outbox import DeliveryPolicy, Outbox
from scalable_pipeline.events.quality_gate_alerts import CLAIM_TIMEOUT_SECONDS, DEFAULT_INTERVAL_SECONDS, DELIVERY_BUDGET_SECONDS
from scalable_pipeline.publishing.data_store import DataStoreResource

DEFAULT_DEADLINE_MINUTES = 30
# The first tick (no cursor) judges the hours due in this many hours before it, not the whole history.
FIRST_LOOKBACK_HOURS = 6


def freshness_policy(deadline_minutes: int) -> dg.FreshnessPolicy:
    """Materialized within ``deadline_minutes`` after each hour ends (1 to 59 minutes: a cron deadline each
    hour); a longer deadline is a time window of an hour plus the deadline."""
    if not deadline_minutes >= 1:
        raise ValueError(f"freshness deadline_minutes must be at least 1, not {deadline_minutes}")
    if deadline_minutes < 60:
        return dg.FreshnessPolicy.cron(
            deadline_cron=f"{deadline_minutes} * * * *", lower_bound_delta=timedelta(minutes=deadline_minutes)
        )
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=60 + deadline_minutes))


def with_freshness(asset: dg.AssetsDefinition, deadline_minutes: int) -> dg.AssetsDefinition:
    """``asset`` with the freshness policy of ``deadline_minutes`` on each of its specs."""
    policy = freshness_policy(deadline_minutes)
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=policy))


def partition_key(hour_start: float) -> str:
    return pd.Timestamp(hour_start, unit="s", tz="UTC").strftime(PARTITION_FORMAT)


def materialized_on_time(instance: dg.DagsterInstance, asset_key: dg.AssetKey, hours: list) -> set[float]:
    """Hour starts among ``hours`` with a materialization before their deadline (one query per hour)."""
    found = set()
    for hour in hours:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=asset_key, asset_partitions=[partition_key(hour.hour_start)], before_timestamp=hour.deadline
            ),
            limit=1,
        ).records
        if records:
            found.add(hour.hour_start)
    return found


def build_late_hour_alerts(
    pipeline: str,
    asset_key: dg.AssetKey,
    deadline_minutes: int = DEFAULT_DEADLINE_MINUTES,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.time,
    first_hour: str = DEFAULT_START,
) -> dg.SensorDefinition:
    """The late-hour sensor of ``pipeline`` over ``asset_key`` (partitions from ``first_hour``); ``clock``
    gives now (tests inject one). Alerts go to the outbox under the ``data_store`` resource's root."""
    freshness_policy(deadline_minutes)  # a bad deadline fails at definition time
    policy = DeliveryPolicy(DEFAULT_INTERVAL_SECONDS, 3600.0, DELIVERY_BUDGET_SECONDS, CLAIM_TIMEOUT_SECONDS)
    first = pd.to_datetime(first_hour, format=PARTITION_FORMAT, utc=True).timestamp()

    @dg.sensor(
        name=f"{pipeline}_late_hours",
        minimum_interval_seconds=minimum_interval_seconds,
        description=f"One alert per hour whose {asset_key.to_user_string()} was not materialized {deadline_minutes} min "
        "after the hour ended.",
    )
    def late_hours(context: dg.SensorEvaluationContext, data_store: DataStoreResource) -> dg.SensorResult:
        now = clock()
        judged_until = json.loads(context.cursor)["judged_until"] if context.cursor else now - FIRST_LOOKBACK_HOURS * 3600.0
        due = due_hours(judged_until, now, deadline_minutes, first)
        outbox = Outbox(data_store.root)
        missing = late(due, materialized_on_time(context.instance, asset_key, due))
        added = sum(
            outbox.add(
                LateHourAlert(pipeline, asset_key.to_user_string(), partition_key(h.hour_start), h.deadline, deadline_minutes),
                now,
            )
            for h in missing
        )
        summary = f"{len(due)} hours due, {len(missing)} late {[partition_key(h.hour_start) for h in missing][:5]}, {added} new alerts; "
        delivery, delivered = deliver(outbox, now, policy)
        summary += delivered
        log_tick(context.log, summary, acted=added > 0 or delivery_acted(delivery), failed=delivery.failed > 0)
        cursor = json.dumps({"judged_until": max([judged_until, *(h.deadline for h in due)])})
        return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=cursor)

    return late_hours
