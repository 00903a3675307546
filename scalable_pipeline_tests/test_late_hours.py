"""Freshness: the output carries Dagster's freshness policy from the deadline, and a late hour alerts once."""

import math
import time

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.core.jsonl import read_records
from scalable_pipeline.definitions import defs
from scalable_pipeline.events.alert_log import alerts_log_path
from scalable_pipeline.events.freshness import Due, due_hours, late
from scalable_pipeline.events.late_hour_alerts import build_late_hour_alerts, freshness_policy
from scalable_pipeline.events.outbox import DELIVERED, Outbox
from scalable_pipeline.pipelines.config import PipelineConfigError
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline_tests.conftest import Clock

KEY = dg.AssetKey("consolidated_output")
H = 3600.0


def test_due_hours_are_judged_once_after_their_deadline():
    start = pd.Timestamp("2026-01-05", tz="UTC").timestamp()
    due = due_hours(judged_until=start, now=start + 3 * H + 30 * 60, deadline_minutes=30, first_hour=start)
    assert due == [Due(start, start + 1.5 * H), Due(start + H, start + 2.5 * H), Due(start + 2 * H, start + 3.5 * H)]
    assert due_hours(judged_until=start + 3.5 * H, now=start + 4.4 * H, deadline_minutes=30, first_hour=start) == []
    assert due_hours(judged_until=start + 3.5 * H, now=start + 4.5 * H, deadline_minutes=30, first_hour=start) == [
        Due(start + 3 * H, start + 4.5 * H)
    ]
    assert late(due, {start, start + 2 * H}) == [Due(start + H, start + 2.5 * H)]


def test_the_freshness_policy_follows_the_deadline():
    policy = freshness_policy(30)
    assert policy.deadline_cron == "30 * * * *" and policy.lower_bound_delta.total_seconds() == 1800
    assert freshness_policy(90).fail_window.to_timedelta().total_seconds() == 150 * 60
    with pytest.raises(ValueError):
        freshness_policy(0)
    spec = defs.get_assets_def("consolidated_output").specs_by_key[KEY]
    assert spec.freshness_policy == freshness_policy(30)


def tick(sensor, instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"data_store": DataStoreResource()})
    return sensor(context)


def test_a_late_hour_alerts_once_and_hours_on_time_do_not(instance, receiver, data_dir):
    # Hours from the current one on: materialized now, before each one's deadline; the sensor's clock
    # is set after those deadlines.
    first = math.floor(time.time() / H) * H
    hours = [first + i * H for i in range(6)]
    for hour in hours:
        if hour != hours[2]:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(KEY, partition=pd.Timestamp(hour, unit="s", tz="UTC").strftime("%Y-%m-%d-%H:%M"))
            )
    clock = Clock(hours[-1] + H + 31 * 60)
    sensor = build_late_hour_alerts("scalable_data_processing", KEY, deadline_minutes=30, clock=clock)
    result = tick(sensor, instance, None)
    late_key = pd.Timestamp(hours[2], unit="s", tz="UTC").strftime("%Y-%m-%d-%H:%M")
    assert "6 hours due, 1 late" in result.skip_reason.skip_message
    assert receiver.texts() == [
        f"Hour late: pipeline scalable_data_processing, partition {late_key}: consolidated_output was not materialized "
        f"within 30 min after the hour ended (alert late-scalable_data_processing-{late_key.replace(':', '')})"
    ]
    # Later ticks judge only new hours; the late hour materialized now is still no second alert.
    instance.report_runless_asset_event(dg.AssetMaterialization(KEY, partition=late_key))
    again = tick(sensor, instance, result.cursor)
    assert "0 hours due" in again.skip_reason.skip_message
    clock.now += H
    later = tick(sensor, instance, again.cursor)
    assert "1 hours due, 1 late" in later.skip_reason.skip_message  # hours[-1] + 1 h was never materialized
    assert len(receiver.texts()) == 2
    assert len(Outbox(data_dir).entries(DELIVERED)) == 2
    assert [line["kind"] for line in read_records(alerts_log_path(data_dir))] == ["late_hour", "late_hour"]


def test_an_hour_materialized_after_its_deadline_is_late(instance, receiver):
    instance.report_runless_asset_event(dg.AssetMaterialization(KEY, partition="2026-01-05-10:00"))  # now: months late
    clock = Clock(pd.Timestamp("2026-01-05 11:31", tz="UTC").timestamp())
    sensor = build_late_hour_alerts("scalable_data_processing", KEY, deadline_minutes=30, clock=clock)
    tick(sensor, instance, '{"judged_until": %f}' % (clock.now - 120))
    assert ["2026-01-05-10:00" in text for text in receiver.texts()] == [True]


def test_pipelines_file_entries_get_their_sensors_and_freshness(tmp_path, monkeypatch):
    monkeypatch.setenv("EU_ORDERS_DB_URL", "postgresql://reader@127.0.0.1:9/orders")
    config = tmp_path / "pipelines.yaml"
    config.write_text(
        """
pipelines:
  - name: eu_orders
    source: {kind: postgres, table: orders, url_env: EU_ORDERS_DB_URL}
    freshness: {deadline_minutes: 45}
    on_source_outage: fail
  - name: us_orders
    source: {kind: landing, landing_dir: /srv/landing/us, min_bytes: 100}
"""
    )
    built = build_definitions(config)
    sensors = sorted(sensor.name for sensor in built.get_repository_def().sensor_defs)
    assert sensors == [
        "eu_orders_db_sensor",
        "eu_orders_late_hours",
        "quality_gate_alerts",
        "run_failure_alerts",
        "scalable_data_processing_backfill_retries",
        "us_orders_landing_sensor",
    ]
    # One sensor retries the backfill runs of every pipeline's job.
    retries = built.resolve_sensor_def("scalable_data_processing_backfill_retries")
    assert sorted(job.name for job in retries.jobs) == ["eu_orders", "us_orders"]
    eu_output = built.get_assets_def(dg.AssetKey(["eu_orders", "consolidated_output"]))
    assert eu_output.specs_by_key[dg.AssetKey(["eu_orders", "consolidated_output"])].freshness_policy == freshness_policy(45)
    config.write_text(
        "pipelines:\n  - name: eu_orders\n    source: {kind: postgres, table: orders, url: 'postgresql://u:pw@h/db'}\n"
    )
    with pytest.raises(PipelineConfigError, match="url_env"):
        build_definitions(config)
