"""The PostgreSQL source and its marker sensor on a real server (``SCALABLE_PIPELINE_TEST_POSTGRES_URL``):
an hour read in batches with its types, an incomplete load failing clearly, hostile table names refused,
one run per new marker, deferral while the source's circuit is open."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import psycopg2
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.db_sensor import READY_AT_TAG, build_db_sensor
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.postgres_orders import IncompleteLoadError, check_table_name, hour_rows, libpq_url
from scalable_pipeline.sources.resource import PostgresOrderSource
from scalable_pipeline_tests.conftest import ManualClockBreaker, failure_message, shipped_resources
from scalable_pipeline_tests.test_postgres_storage import POSTGRES_URL, postgres_database  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not POSTGRES_URL, reason="SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set (PostgreSQL tests off)"),
]

HOUR = pd.Timestamp("2026-01-05 10:00", tz="UTC")
NOW = pd.Timestamp("2026-03-06 12:00", tz="UTC").timestamp()
SCHEMA = """
CREATE TABLE {orders} (order_id bigint, event_time timestamptz, customer_id bigint, region text,
                       amount double precision, status text, delivered_hour timestamptz NOT NULL);
CREATE INDEX ON {orders} (delivered_hour);
CREATE TABLE {ready} (delivered_hour timestamptz PRIMARY KEY, row_count bigint NOT NULL,
                      ready_at timestamptz NOT NULL DEFAULT now());
"""


@pytest.fixture
def database(postgres_database, monkeypatch):  # noqa: F811
    """A fresh database with the ``orders`` and ``orders_ready`` tables; its URL (also in ``ORDERS_DB_URL``)."""
    monkeypatch.setenv("ORDERS_DB_URL", postgres_database)
    with psycopg2.connect(libpq_url(postgres_database)) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL(SCHEMA).format(orders=sql.Identifier("orders"), ready=sql.Identifier("orders_ready")))
    return postgres_database


def execute(url: str, statement: str, rows: list[tuple] | tuple = ()) -> None:
    with psycopg2.connect(libpq_url(url)) as connection, connection.cursor() as cursor:
        if rows and isinstance(rows, list):
            cursor.executemany(statement, rows)
        else:
            cursor.execute(statement, rows or None)
    connection.close()


def load(
    url: str, hour: pd.Timestamp, rows: int, marker_count: int | None = None, ready_at: datetime | None = None
) -> list[tuple]:
    """What the upstream loader does: the hour's rows, then its marker (``marker_count`` overrides the count)."""
    start = hour.to_pydatetime()
    data = [
        (
            hour.hour * 1000 + i,
            start + timedelta(seconds=i),
            None if i == 2 else 100 + i,
            "north",
            float("nan") if i == 3 else 10.5 + i,
            "paid",
            start,
        )
        for i in range(rows)
    ]
    execute(url, "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s)", data)
    execute(
        url,
        "INSERT INTO orders_ready (delivered_hour, row_count, ready_at) VALUES (%s, %s, %s)",
        (start, rows if marker_count is None else marker_count, ready_at or datetime.now(timezone.utc)),
    )
    return data


def test_an_hour_is_read_in_batches_with_the_order_record_types(database):
    data = load(database, HOUR, rows=5)
    load(database, HOUR + pd.Timedelta(hours=1), rows=2)  # another hour: not read
    blocks = list(hour_rows(database, "orders", HOUR, batch_rows=2))
    assert [len(block) for block in blocks] == [2, 2, 1]
    frame = pd.concat(blocks, ignore_index=True)
    assert frame["order_id"].tolist() == [row[0] for row in data]  # load order
    assert str(frame["order_id"].dtype) == "int64" and str(frame["customer_id"].dtype) == "Int64"
    assert str(frame["event_time"].dtype) == "datetime64[us, UTC]"
    assert frame["event_time"].tolist() == [pd.Timestamp(row[1]) for row in data]
    assert frame["customer_id"].isna().tolist() == [False, False, True, False, False]
    assert frame["amount"].isna().tolist() == [False, False, False, True, False]


def test_an_empty_hour_is_one_empty_block(database):
    execute(database, "INSERT INTO orders_ready (delivered_hour, row_count) VALUES (%s, 0)", (HOUR.to_pydatetime(),))
    blocks = list(hour_rows(database, "orders", HOUR))
    assert len(blocks) == 1 and blocks[0].empty and list(blocks[0].columns)[:2] == ["order_id", "event_time"]


def test_an_incomplete_load_fails_clearly_before_reading(database):
    load(database, HOUR, rows=3, marker_count=5)
    with pytest.raises(
        IncompleteLoadError, match=r"incomplete load of hour 2026-01-05 10:00:00\+00:00: 3 rows, but orders_ready says 5"
    ):
        next(hour_rows(database, "orders", HOUR))
    with pytest.raises(IncompleteLoadError, match="no marker in orders_ready"):
        next(hour_rows(database, "orders", HOUR + pd.Timedelta(hours=1)))


@pytest.mark.parametrize(
    "hostile",
    ['orders"; DROP TABLE orders_ready; --', "orders; DROP TABLE orders_ready", "a.b.c", "1orders", "orders ready", "x" * 60, ""],
)
def test_hostile_table_names_are_refused_before_any_sql(database, hostile):
    with pytest.raises(ValueError, match=r"is not allowed|too long"):
        check_table_name(hostile)
    with pytest.raises(ValueError):
        PostgresOrderSource(url=database, table=hostile)
    load(database, HOUR, rows=1)
    assert len(list(hour_rows(database, "orders", HOUR))) == 1  # both tables still there


def test_a_schema_qualified_table_is_quoted(database):
    execute(
        database,
        'CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Orders" (LIKE orders); CREATE TABLE "Sales"."Orders_ready" (LIKE orders_ready)',
    )
    execute(database, 'INSERT INTO "Sales"."Orders_ready" VALUES (%s, 0, now())', (HOUR.to_pydatetime(),))
    assert next(hour_rows(database, "Sales.Orders", HOUR)).empty


def test_an_unreachable_server_is_an_outage_that_never_names_the_url():
    url = "postgresql://reader:s3cretPassw0rd@127.0.0.1:9/orders"  # port 9: nothing listens
    with pytest.raises(SourceUnavailableError) as caught:
        next(hour_rows(url, "orders", HOUR))
    assert "s3cretPassw0rd" not in str(caught.value) and "reader:" not in str(caught.value)
    assert "s3cretPassw0rd" not in PostgresOrderSource(url=url, table="orders").describe()


def test_raw_volume_stores_the_loaded_hour_and_fails_on_an_incomplete_one(database, instance, monkeypatch, data_dir):
    load(database, HOUR, rows=4)
    load(database, HOUR + pd.Timedelta(hours=1), rows=3, marker_count=4)
    source = PostgresOrderSource(url=dg.EnvVar("ORDERS_DB_URL"), table="orders", batch_rows=3)
    resources = shipped_resources(source=source)
    good = dg.materialize(
        [defs.get_assets_def("raw_volume")], partition_key="2026-01-05-10:00", resources=resources, instance=instance
    )
    stored = pq.read_table(VersionedStore(data_dir).published("raw_volume", "2026-01-05-10:00").path).to_pandas()
    assert stored["order_id"].tolist() == [10_000, 10_001, 10_002, 10_003]
    metadata = good.asset_materializations_for_node("raw_volume")[0].metadata
    assert metadata["source"].value == "PostgreSQL table orders" and metadata["total_records"].value == 4
    bad = dg.materialize(
        [defs.get_assets_def("raw_volume")],
        partition_key="2026-01-05-11:00",
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not bad.success
    assert "3 rows, but orders_ready says 4" in failure_message(bad)
    assert VersionedStore(data_dir).published("raw_volume", "2026-01-05-11:00") is None


class Sensor:
    def __init__(self, url: str, instance, tmp_path, breaker: CircuitBreakerResource | None = None, clock=lambda: NOW):
        self.definition = build_db_sensor(
            "scalable_data_processing", "scalable_data_processing", "orders", "ORDERS_DB_URL", clock=clock
        )
        self.resources = {
            "data_store": DataStoreResource(data_dir=str(tmp_path / "data")),
            "circuit_breaker": breaker or CircuitBreakerResource(),
        }
        self.instance, self.cursor = instance, None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
        result = self.definition(context)
        self.cursor = result.cursor
        return result


def partitions(result: dg.SensorResult) -> list[str]:
    return [request.partition_key for request in result.run_requests or []]


def test_one_run_per_new_marker_and_a_reload_runs_again(database, instance, tmp_path):
    sensor = Sensor(database, instance, tmp_path)
    assert partitions(sensor.tick()) == []
    base = datetime(2026, 3, 6, 11, 0, tzinfo=timezone.utc)
    for offset in range(3):
        load(database, HOUR + pd.Timedelta(hours=offset), rows=1, ready_at=base + timedelta(minutes=offset))
    first = sensor.tick()
    assert partitions(first) == ["2026-01-05-10:00", "2026-01-05-11:00", "2026-01-05-12:00"]
    assert len({request.run_key for request in first.run_requests}) == 3
    assert first.run_requests[0].tags[READY_AT_TAG] == base.isoformat()
    assert partitions(sensor.tick()) == []
    # A marker committed late with an earlier ready_at than one already read is still taken.
    load(database, HOUR + pd.Timedelta(hours=5), rows=1, ready_at=base + timedelta(minutes=1, seconds=30))
    assert partitions(sensor.tick()) == ["2026-01-05-15:00"]
    # The loader reloads hour 10: a new marker time, a new run.
    execute(
        database,
        "UPDATE orders_ready SET ready_at = %s WHERE delivered_hour = %s",
        (base + timedelta(hours=1), HOUR.to_pydatetime()),
    )
    again = sensor.tick()
    assert partitions(again) == ["2026-01-05-10:00"] and again.run_requests[0].run_key != first.run_requests[0].run_key
    assert partitions(sensor.tick()) == []


def test_a_marker_of_an_hour_still_running_waits_for_it(database, instance, tmp_path):
    clock = [NOW]
    sensor = Sensor(database, instance, tmp_path, clock=lambda: clock[0])
    running = pd.Timestamp(NOW, unit="s", tz="UTC")  # 12:00, the hour in progress
    load(database, running, rows=1, ready_at=datetime(2026, 3, 6, 12, 30, tzinfo=timezone.utc))
    assert partitions(sensor.tick()) == []
    clock[0] += 3600
    assert partitions(sensor.tick()) == ["2026-03-06-12:00"]


def test_a_thousand_markers(database, instance, tmp_path):
    base = datetime(2026, 1, 5, tzinfo=timezone.utc)
    execute(
        database,
        "INSERT INTO orders_ready (delivered_hour, row_count, ready_at) VALUES (%s, 0, %s)",
        [(base + timedelta(hours=i), base + timedelta(hours=i, minutes=5)) for i in range(1000)],
    )
    sensor = Sensor(database, instance, tmp_path)
    first = sensor.tick()  # its time and the next tick's: python bench/sensor_ticks.py
    assert len(first.run_requests) == 1000 and len({request.run_key for request in first.run_requests}) == 1000
    assert partitions(sensor.tick()) == []


def test_markers_wait_while_the_circuit_is_open_and_run_once_it_closes(database, instance, tmp_path):
    breakers = ManualClockBreaker(failure_threshold=1, cooldown_seconds=300)
    clock = ManualClockBreaker.seconds
    clock[0] = NOW
    sensor = Sensor(database, instance, tmp_path, breaker=breakers, clock=lambda: clock[0])
    breaker = breakers.breaker("source", sensor.resources["data_store"])

    def outage():
        raise SourceUnavailableError("PostgreSQL source unreachable: connection refused")

    with pytest.raises(SourceUnavailableError):
        breaker.call(outage)
    load(database, HOUR, rows=1)
    held = sensor.tick()
    assert partitions(held) == [] and "1 hour(s) deferred" in held.skip_reason.skip_message
    assert "connection refused" in held.skip_reason.skip_message
    clock[0] = NOW + 300  # the cool-down is over: this tick's read of the markers is the trial
    assert partitions(sensor.tick()) == ["2026-01-05-10:00"]
    assert breaker.state().status == "closed"
