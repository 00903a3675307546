"""Tick times of the data-arrival sensors and the alert latency of a failed run.

- landing sensor, 1,000 hour files (small Parquet): the first look, the tick that judges them all and
  requests 1,000 runs, and a steady tick (nothing new);
- database sensor, 1,000 markers in ``orders_ready`` on PostgreSQL (``SCALABLE_PIPELINE_TEST_POSTGRES_URL``;
  a temporary database, dropped after): the first tick (1,000 runs requested) and a steady tick;
- run_failure_alerts: a run fails, the next tick alerts; the tick time and the run's end to the webhook's
  receipt inside the tick (a real SQLite instance, a local receiver). The sensor ticks every ``interval``,
  so a failure waits interval/2 on average before its tick.

    python bench/sensor_ticks.py [--repeats 5] [--interval 30]
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from scalable_pipeline.events.run_failure_alerts import build_run_failure_alerts
from scalable_pipeline.events.webhook import WEBHOOK_ENV
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.db_sensor import build_db_sensor
from scalable_pipeline.sources.landing_sensor import LandingRules, build_landing_sensor
from scalable_pipeline.sources.postgres_orders import libpq_url
from scalable_pipeline.sources.resource import LandingFileSource

PIPELINE = JOB = "scalable_data_processing"
FILES = 1000


def timed_tick(sensor: dg.SensorDefinition, instance, cursor: str | None, resources: dict) -> tuple[float, dg.SensorResult]:
    """One tick of ``sensor`` and its wall time."""
    started = time.perf_counter()
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    assert isinstance(result, dg.SensorResult)
    return time.perf_counter() - started, result


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (max {max(values):.3f})"


def landing(repeats: int) -> None:
    table = pa.table({"order_id": [1], "event_time": [pd.Timestamp("2026-01-05", tz="UTC")], "customer_id": [7],
                      "region": ["north"], "amount": [1.5], "status": ["paid"]})  # fmt: skip
    looks, judging, steady = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
            landing_dir = Path(tmp) / "landing"
            for hour in pd.date_range("2026-01-05", periods=FILES, freq="h", tz="UTC"):
                path = landing_dir / f"{hour:%Y-%m-%d}" / f"{hour:%H}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path)
            sensor = build_landing_sensor(
                PIPELINE, JOB, LandingRules.of(LandingFileSource(landing_dir=str(landing_dir), max_age_seconds=10 * 365 * 86400))
            )
            resources = {"data_store": DataStoreResource(data_dir=f"{tmp}/data"), "circuit_breaker": CircuitBreakerResource()}
            cursor, requested = None, []
            for times in (looks, judging, steady):
                seconds, result = timed_tick(sensor, instance, cursor, resources)
                cursor = result.cursor
                times.append(seconds)
                requested.append(len(result.run_requests or []))
            assert requested == [0, FILES, 0], requested
    print(f"landing sensor, {FILES:,} files: first look {summary(looks)}; judging tick ({FILES:,} runs) {summary(judging)}; "
          f"steady tick {summary(steady)}")  # fmt: skip


def markers(repeats: int) -> None:
    server = os.environ.get("SCALABLE_PIPELINE_TEST_POSTGRES_URL")
    if not server:
        print("database sensor: SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set, not measured")
        return
    name = f"scalable_pipeline_bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(libpq_url(server))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        url = libpq_url(server).rsplit("/", 1)[0] + f"/{name}"
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE orders_ready (delivered_hour timestamptz PRIMARY KEY, row_count bigint, ready_at timestamptz)"
            )
            cursor.execute("INSERT INTO orders_ready SELECT h, 0, h + interval '5 minutes' FROM "
                           "generate_series(timestamptz '2026-01-05', timestamptz '2026-01-05' + interval '999 hours', interval '1 hour') h")  # fmt: skip
        os.environ["BENCH_ORDERS_DB_URL"] = url
        sensor = build_db_sensor(PIPELINE, JOB, "orders", "BENCH_ORDERS_DB_URL")
        first, steady = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
                resources = {"data_store": DataStoreResource(data_dir=f"{tmp}/data"), "circuit_breaker": CircuitBreakerResource()}
                seconds, result = timed_tick(sensor, instance, None, resources)
                assert len(result.run_requests or []) == FILES
                first.append(seconds)
                seconds, result = timed_tick(sensor, instance, result.cursor, resources)
                assert not result.run_requests
                steady.append(seconds)
        print(f"database sensor, {FILES:,} markers: first tick ({FILES:,} runs) {summary(first)}; steady tick {summary(steady)}")
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@dg.asset
def bench_failing_asset():
    raise ConnectionError("source unreachable")


def alert_latency(repeats: int, interval: float) -> None:
    receipts: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            receipts.append(time.time())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ[WEBHOOK_ENV] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    ticks, in_tick = [], []
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
        sensor = build_run_failure_alerts({})
        resources = {"data_store": DataStoreResource(data_dir=f"{tmp}/data")}
        cursor = None
        for _ in range(repeats):
            result = dg.materialize([bench_failing_asset], instance=instance, raise_on_error=False)
            ended = instance.get_run_record_by_id(result.run_id).end_time
            before = len(receipts)
            tick_start = time.time()
            seconds, tick = timed_tick(sensor, instance, cursor, resources)
            assert len(receipts) == before + 1
            cursor = tick.cursor
            ticks.append(seconds)
            in_tick.append(receipts[-1] - max(tick_start, ended))
    server.shutdown()
    server.server_close()
    tick = statistics.median(ticks)
    print(f"run_failure_alerts, 1 failed run per tick: tick {summary(ticks)}; in-tick run end -> receipt {summary(in_tick)}")
    print(f"alert latency for a failed run at a {interval:g} s interval: mean {interval / 2 + tick:.2f} s (interval/2 + tick), "
          f"worst {interval + tick:.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--interval", type=float, default=30.0, help="sensor interval (s)")
    args = parser.parse_args()
    landing(args.repeats)
    markers(args.repeats)
    alert_latency(args.repeats, args.interval)


if __name__ == "__main__":
    main()
