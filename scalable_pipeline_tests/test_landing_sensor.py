"""The landing sensor: a run per complete, valid hour file, each content once; rejected files are
moved to the quarantine with their reason; nothing is lost; deferral while the source's circuit is open."""

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalable_pipeline.assembly.sensors import source_sensors
from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.sources import landing_sensor
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.circuit_breaker_store import DurableCircuitBreaker
from scalable_pipeline.sources.landing_sensor import DIGEST_TAG, FILE_TAG, LandingRules, build_landing_sensor
from scalable_pipeline.sources.resource import LandingFileSource, PostgresOrderSource, SyntheticOrderSource
from scalable_pipeline_tests.conftest import Clock, ManualClockBreaker, order_table, shipped_resources

NOW = pd.Timestamp("2026-03-06 12:00", tz="UTC").timestamp()
HEADER = "order_id,event_time,customer_id,region,amount,status\n"


def orders(hour: str, rows: int = 3) -> pa.Table:
    return order_table(pd.Timestamp(hour, tz="UTC"), rows)


def land(landing: Path, rel: str, content: pa.Table | str | bytes, mtime: float = NOW - 60) -> Path:
    """Write a file into the landing folder with a fixed mtime (the sensor's clock is NOW)."""
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pa.Table):
        pq.write_table(content, path)
    else:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.utime(path, (mtime, mtime))
    return path


class Sensor:
    """Ticks a landing sensor the way the daemon does: the cursor of each tick is given to the next."""

    def __init__(self, tmp_path: Path, instance, breaker: CircuitBreakerResource | None = None, **rules):
        self.landing = tmp_path / "landing"
        self.landing.mkdir(exist_ok=True)
        self.root = tmp_path / "data"
        self.clock = Clock(NOW)
        self.instance = instance
        self.cursor: str | None = None
        self.breaker = breaker or CircuitBreakerResource()
        self.definition = build_landing_sensor(
            "scalable_data_processing",
            "scalable_data_processing",
            LandingRules.of(LandingFileSource(landing_dir=str(self.landing), **rules)),
            clock=self.clock,
        )
        self.requested: list[dg.RunRequest] = []

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"data_store": DataStoreResource(data_dir=str(self.root)), "circuit_breaker": self.breaker},
        )
        result = self.definition(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        self.requested += result.run_requests or []
        return result

    def quarantined(self) -> dict[str, dict]:
        """Relative path in the quarantine -> its reason."""
        folder = self.root / "quarantine" / "landing" / "scalable_data_processing"
        return {
            str(path.relative_to(folder)).removesuffix(".reason.json"): json.loads(path.read_text())
            for path in folder.rglob("*.reason.json")
        }


def outage():
    raise OSError("landing share unreachable")


def keys(result: dg.SensorResult) -> list[str]:
    return [request.partition_key for request in result.run_requests or []]


@pytest.fixture
def sensor(tmp_path, instance):
    return Sensor(tmp_path, instance)


def test_a_complete_file_runs_once_after_two_looks(sensor):
    land(sensor.landing, "2026-01-05/05.parquet", orders("2026-01-05 05:00"))
    first = sensor.tick()
    assert keys(first) == [] and "0 newly complete" in first.skip_reason.skip_message
    second = sensor.tick()
    assert keys(second) == ["2026-01-05-05:00"]
    request = second.run_requests[0]
    assert request.tags[FILE_TAG] == "2026-01-05/05.parquet"
    assert request.run_key.startswith("2026-01-05/05.parquet@sha256:")
    assert keys(sensor.tick()) == [] and keys(sensor.tick()) == []  # never twice


def test_a_growing_file_waits_until_it_stops_changing(sensor):
    path = land(sensor.landing, "2026-01-05/06.csv", HEADER + "1,2026-01-05T06:05:00Z,7,north,1.5,paid\n")
    sensor.tick()
    with path.open("a") as handle:
        handle.write("2,2026-01-05T06:06:00Z,7,north,1.5,paid\n")
    assert keys(sensor.tick()) == []  # changed since the last look
    assert keys(sensor.tick()) == ["2026-01-05-06:00"]
    assert sensor.quarantined() == {}


def test_hidden_and_tmp_files_are_never_taken(sensor):
    land(sensor.landing, "2026-01-05/.07.parquet", orders("2026-01-05 07:00"))
    land(sensor.landing, "2026-01-05/07.parquet.tmp", orders("2026-01-05 07:00"))
    land(sensor.landing, ".staging/2026-01-05/07.parquet", orders("2026-01-05 07:00"))
    for _ in range(3):
        assert keys(sensor.tick()) == []
    assert sensor.quarantined() == {}
    assert json.loads(sensor.cursor)["files"] == {}


@pytest.mark.parametrize(
    ("rel", "content", "mtime", "rule"),
    [
        ("2026-01-05/08.csv", "", NOW - 60, "min_size"),
        ("2026-01-05/08.parquet", orders("2026-01-05 08:00"), NOW - 8 * 24 * 3600, "max_age"),
        ("2026-01-05/08.parquet", b"PAR1 this is not parquet PAR1", NOW - 60, "readable_table"),
        ("2026-01-05/08.csv", "order_id,amount\n1,2.5\n", NOW - 60, "order_record_columns"),
        ("2026-01-05/08.txt", "hello", NOW - 60, "hour_file_name"),
        ("2025-12-31/23.parquet", orders("2025-12-31 23:00"), NOW - 60, "hour_partition"),
    ],
)
def test_a_rejected_file_is_moved_to_the_quarantine_with_its_reason(sensor, rel, content, mtime, rule):
    path = land(sensor.landing, rel, content, mtime)
    data = path.read_bytes()
    sensor.tick()
    assert keys(sensor.tick()) == []
    assert not path.exists()
    reasons = sensor.quarantined()
    assert list(reasons) == [rel]
    assert reasons[rel]["rule"] == rule and reasons[rel]["moved"] and reasons[rel]["detail"]
    assert pd.Timestamp(reasons[rel]["time"]).timestamp() == NOW
    kept = sensor.root / "quarantine" / "landing" / "scalable_data_processing" / rel
    assert kept.read_bytes() == data  # nothing deleted
    assert json.loads(sensor.cursor)["files"] == {}  # gone from the folder, gone from the cursor


def test_the_minimum_size_is_configurable(tmp_path, instance):
    sensor = Sensor(tmp_path, instance, min_bytes=10_000)
    land(sensor.landing, "2026-01-05/09.parquet", orders("2026-01-05 09:00"))
    sensor.tick()
    sensor.tick()
    assert sensor.quarantined()["2026-01-05/09.parquet"]["rule"] == "min_size"


def test_symlinks_leading_out_of_the_landing_folder_are_refused_and_the_target_untouched(sensor, tmp_path):
    outside = land(tmp_path / "elsewhere", "secret.parquet", orders("2026-01-05 10:00"))
    (sensor.landing / "2026-01-05").mkdir()
    (sensor.landing / "2026-01-05" / "10.parquet").symlink_to(outside)
    (sensor.landing / "2026-01-05" / "11.parquet").symlink_to(Path("..") / ".." / "elsewhere" / "secret.parquet")
    sensor.tick()
    assert keys(sensor.tick()) == []
    reasons = sensor.quarantined()
    assert {rel: reason["rule"] for rel, reason in reasons.items()} == {
        "2026-01-05/10.parquet": "inside_landing_dir",
        "2026-01-05/11.parquet": "inside_landing_dir",
    }
    assert outside.exists()  # the link was moved, not what it points at
    assert (sensor.root / "quarantine" / "landing" / "scalable_data_processing" / "2026-01-05" / "10.parquet").is_symlink()


def test_a_symlink_inside_the_folder_runs(sensor):
    land(sensor.landing, ".store/batch-1.parquet", orders("2026-01-05 12:00"))  # hidden: never taken itself
    (sensor.landing / "2026-01-05").mkdir()
    (sensor.landing / "2026-01-05" / "12.parquet").symlink_to(sensor.landing / ".store" / "batch-1.parquet")
    sensor.tick()
    assert keys(sensor.tick()) == ["2026-01-05-12:00"]
    assert sensor.quarantined() == {}


def test_a_replaced_file_runs_again_and_a_copy_of_the_cursor_never_reruns(sensor):
    path = land(sensor.landing, "2026-01-05/13.parquet", orders("2026-01-05 13:00"))
    sensor.tick()
    first = sensor.tick().run_requests[0]
    saved = sensor.cursor
    replacement = land(sensor.landing, "incoming.tmp", orders("2026-01-05 13:00", rows=5), mtime=NOW - 30)
    replacement.replace(path)  # an atomic replace: new inode and mtime
    sensor.tick()
    second = sensor.tick().run_requests[0]
    assert second.partition_key == first.partition_key and second.run_key != first.run_key
    sensor.cursor = saved  # a restart from an older cursor: the file's content decides, not the tick
    sensor.tick()
    again = sensor.tick().run_requests
    assert [request.run_key for request in again] == [second.run_key]  # Dagster drops a run key already used


def test_a_duplicate_delivery_of_the_same_content_has_the_same_run_key(sensor):
    path = land(sensor.landing, "2026-01-05/20.parquet", orders("2026-01-05 20:00"))
    sensor.tick()
    first = sensor.tick().run_requests[0]
    copy = land(sensor.landing, "resend.tmp", path.read_bytes(), mtime=NOW - 10)
    copy.replace(path)  # the loader sends the same file again: new inode and mtime, same bytes
    sensor.tick()
    (again,) = sensor.tick().run_requests
    assert again.run_key == first.run_key  # Dagster does not launch a run key twice
    assert again.tags[DIGEST_TAG] == first.tags[DIGEST_TAG]


def test_a_corrupt_file_does_not_stop_the_others_and_the_cursor_survives_a_restart(sensor):
    land(sensor.landing, "2026-01-05/14.parquet", b"\x00garbage")
    land(sensor.landing, "2026-01-05/15.parquet", orders("2026-01-05 15:00"))
    sensor.tick()
    saved = sensor.cursor
    restarted = Sensor(sensor.landing.parent, sensor.instance)  # a new process: only the stored cursor remains
    restarted.cursor = saved
    result = restarted.tick()
    assert keys(result) == ["2026-01-05-15:00"]
    assert restarted.quarantined()["2026-01-05/14.parquet"]["rule"] == "readable_table"


def test_a_future_hour_waits_without_being_rejected(sensor):
    land(sensor.landing, "2026-03-06/12.parquet", orders("2026-03-06 12:00"))  # the hour NOW is in
    sensor.tick()
    assert keys(sensor.tick()) == [] and sensor.quarantined() == {}
    sensor.clock.now += 3600
    assert keys(sensor.tick()) == ["2026-03-06-12:00"]


@pytest.mark.slow
def test_a_thousand_files(sensor, monkeypatch):
    table = orders("2026-01-05 00:00")
    hours = pd.date_range("2026-01-05", periods=1000, freq="h", tz="UTC")
    for hour in hours:
        land(sensor.landing, f"{hour:%Y-%m-%d}/{hour:%H}.parquet", table)
    land(sensor.landing, "2026-01-09/bad.parquet", b"nope")
    sensor.tick()
    judged = sensor.tick()  # this tick's time and the steady one's: python bench/sensor_ticks.py
    assert sorted(keys(judged)) == sorted(hour_keys(hours))
    opened, open_landing_file = [], landing_sensor.open_landing_file

    def open_and_note(landing_dir, path):
        opened.append(path)
        return open_landing_file(landing_dir, path)

    monkeypatch.setattr(landing_sensor, "open_landing_file", open_and_note)
    steady = sensor.tick()
    assert keys(steady) == []
    assert opened == []  # a look at 1,000 unchanged files is a directory scan, not 1,000 reads
    assert list(sensor.quarantined()) == ["2026-01-09/bad.parquet"]
    assert len(json.loads(sensor.cursor)["files"]) == 1000


def hour_keys(hours) -> list[str]:
    return [f"{hour:%Y-%m-%d-%H:%M}" for hour in hours]


def test_hours_are_deferred_while_the_circuit_is_open_and_launched_when_it_closes(tmp_path, instance):
    ManualClockBreaker.seconds[0] = NOW
    breakers = ManualClockBreaker(failure_threshold=1, cooldown_seconds=300)
    sensor = Sensor(tmp_path, instance, breaker=breakers)
    breaker = breakers.breaker("source", DataStoreResource(data_dir=str(sensor.root)))

    with pytest.raises(OSError):
        breaker.call(outage)  # a run found the source down: the circuit opens at NOW
    land(sensor.landing, "2026-01-05/16.parquet", orders("2026-01-05 16:00"))
    sensor.tick()
    held = sensor.tick()
    assert keys(held) == []
    message = held.skip_reason.skip_message
    assert "1 hour(s) deferred" in message and "circuit 'source' is open" in message and "landing share unreachable" in message
    assert json.loads(sensor.cursor)["files"]["2026-01-05/16.parquet"][1] == "ready"

    sensor.clock.now = ManualClockBreaker.seconds[0] = NOW + 301  # cool-down over: this tick's read is the trial
    launched = sensor.tick()
    assert keys(launched) == ["2026-01-05-16:00"]
    assert breaker.state().status == "closed"
    assert keys(sensor.tick()) == []


def test_with_fail_the_circuit_does_not_hold_hours(tmp_path, instance):
    ManualClockBreaker.seconds[0] = NOW
    breakers = ManualClockBreaker(failure_threshold=1, cooldown_seconds=300)
    sensor = Sensor(tmp_path, instance, breaker=breakers)
    sensor.definition = build_landing_sensor(
        "scalable_data_processing",
        "scalable_data_processing",
        LandingRules.of(LandingFileSource(landing_dir=str(sensor.landing))),
        on_source_outage="fail",
        clock=sensor.clock,
    )
    with pytest.raises(OSError):
        DurableCircuitBreaker(sensor.root, "source", breakers.settings, clock=lambda: NOW).call(outage)
    land(sensor.landing, "2026-01-05/17.parquet", orders("2026-01-05 17:00"))
    sensor.tick()
    assert keys(sensor.tick()) == ["2026-01-05-17:00"]


def test_a_missing_landing_folder_skips_the_tick_and_keeps_the_cursor(sensor):
    land(sensor.landing, "2026-01-05/18.parquet", orders("2026-01-05 18:00"))
    sensor.tick()
    saved = sensor.cursor
    sensor.landing.rename(sensor.landing.with_name("unmounted"))
    result = sensor.tick()
    assert "not there" in result.skip_reason.skip_message and sensor.cursor == saved


def test_the_run_reads_the_file_the_sensor_took_either_file_type(sensor, data_dir):
    """A CSV hour under the default (Parquet) pattern: the sensor takes it and raw_volume reads that file."""
    land(
        sensor.landing,
        "2026-01-05/19.csv",
        HEADER + "5,2026-01-05T19:05:00Z,7,north,1.5,paid\n6,2026-01-05T19:06:00Z,8,south,2.5,placed\n",
    )
    sensor.tick()
    (request,) = sensor.tick().run_requests
    source = LandingFileSource(landing_dir=str(sensor.landing))
    result = dg.materialize(
        [defs.get_assets_def("raw_volume")],
        partition_key=request.partition_key,
        resources=shipped_resources(source=source),
        instance=sensor.instance,
        tags=request.tags,
    )
    stored = pq.read_table(VersionedStore(data_dir).published("raw_volume", request.partition_key).path).to_pandas()
    assert result.success and stored["order_id"].tolist() == [5, 6]


def test_each_source_gets_its_data_arrival_sensor():
    landing = source_sensors("orders_eu", "orders_eu", LandingFileSource(landing_dir="/srv/landing", min_bytes=100))
    assert [sensor.name for sensor in landing] == ["orders_eu_landing_sensor"]
    postgres = PostgresOrderSource(url=dg.EnvVar("ORDERS_DB_URL"), table="orders")
    assert [sensor.name for sensor in source_sensors("orders_eu", "orders_eu", postgres)] == ["orders_eu_db_sensor"]
    assert source_sensors("orders_eu", "orders_eu", SyntheticOrderSource()) == []
    inline = PostgresOrderSource(url="postgresql://reader:secret@db/orders", table="orders")
    with pytest.raises(ValueError, match="environment variable"):
        source_sensors("orders_eu", "orders_eu", inline)
