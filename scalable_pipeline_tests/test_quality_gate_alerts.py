"""quality_gate_alerts: one alert per failed check evaluation, delivered once, through a durable outbox."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from scalable_pipeline.alerts import outbox as outbox_module
from scalable_pipeline.alerts.alert_log import alerts_log_path
from scalable_pipeline.alerts.evaluations import check_evaluation_records
from scalable_pipeline.alerts.messages import Alert, alert_id, alert_text
from scalable_pipeline.alerts.outbox import DELIVERED, PENDING, Outbox
from scalable_pipeline.alerts.webhook import WEBHOOK_ENV, WebhookError, post_json, redact
from scalable_pipeline.assets.gate_results import check_result
from scalable_pipeline.decisions.gates import ratio_at_most
from scalable_pipeline.decisions.retry import RetryLimits, retry_delay
from scalable_pipeline.definitions import build_resources, defs
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.sensors.quality_gate_alerts import build_quality_gate_alerts, quality_gate_alerts
from scalable_pipeline.storage.jsonl import read_records

PARTS = dg.StaticPartitionsDefinition(["good", "bad"])
SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSecretToken"


@dg.asset(partitions_def=PARTS, check_specs=[dg.AssetCheckSpec("invalid_ratio", asset="tiny_orders")])
def tiny_orders(context: dg.AssetExecutionContext):
    """10 rows; partition ``bad`` has 3 invalid (ratio 0.3 > 0.05), ``good`` has none."""
    invalid = 3 if context.partition_key == "bad" else 0
    yield dg.Output(10)
    yield check_result("tiny_orders", ratio_at_most("invalid_ratio", invalid, 10, 0.05, "invalid rows"))


class Receiver:
    """A local webhook: records every POST body; answers with ``status``."""

    def __init__(self):
        self.status = 200
        self.bodies: list[dict] = []  # bodies answered with 2xx
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts += 1
                if 200 <= receiver.status < 300:
                    receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sqlite_instance():
    """A SQLite-backed instance (run-sharded event log), as a deployment has."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    monkeypatch.setenv(WEBHOOK_ENV, server.url)
    yield server
    server.close()


def closed_port_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


def run_tiny(instance, partition_key: str) -> None:
    dg.materialize([tiny_orders], partition_key=partition_key, instance=instance)


def tick(instance, cursor=None, sensor=quality_gate_alerts) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"data_store": DataStoreResource()})
    return sensor(context)


def evaluation_storage_ids(instance, passed: bool) -> list[int]:
    return [
        r.storage_id
        for r in check_evaluation_records(instance, None, None, limit=1000)
        if r.event_log_entry.dagster_event.event_specific_data.passed == passed
    ]


# --- pure functions -----------------------------------------------------------------------------


def test_backoff_doubles_from_base_up_to_cap():
    """The outbox's backoff: no jitter, attempt n waits ``retry_delay(n - 1)``."""
    limits = RetryLimits(delay_seconds=30, max_delay_seconds=600, jitter_fraction=0.0)
    assert [retry_delay(n - 1, limits, 0.0) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]


def test_alert_text_names_asset_partition_check_score_and_threshold():
    alert = Alert(7, "run-1", "processed_chunks", "2024-01-01-10:00", "invalid_ratio", "ERROR", 0.0123, 0.01, "too many", 0.0)
    text = alert_text(alert)
    expected = ("processed_chunks", "2024-01-01-10:00", "invalid_ratio", "score 0.0123", "threshold 0.01", "ERROR")
    for part in (*expected, "check-eval-000000000007"):
        assert part in text
    assert alert_text(Alert(7, "r", "a", None, "c", "WARN", None, None, None, 0.0)).count("n/a") == 2


def test_alert_ids_sort_in_event_order():
    assert sorted([alert_id(100), alert_id(9), alert_id(12)]) == [alert_id(9), alert_id(12), alert_id(100)]


def test_redact_removes_url_host_and_secret_path():
    message = redact(f"could not reach {SECRET_PATH} at hooks.example.com", "https://hooks.example.com" + SECRET_PATH)
    assert "xoxSecretToken" not in message and "hooks.example.com" not in message


def test_post_json_errors_never_name_the_url():
    for url in (closed_port_url(), "notascheme://" + SECRET_PATH[1:]):
        with pytest.raises(WebhookError) as error:
            post_json(url, {"text": "x"}, timeout=1)
        assert "xoxSecretToken" not in str(error.value) and "127.0.0.1" not in str(error.value)


# --- the sensor against a real instance and a local webhook -------------------------------------


def test_each_failed_evaluation_becomes_exactly_one_alert(sqlite_instance, data_dir, receiver):
    run_tiny(sqlite_instance, "good")
    run_tiny(sqlite_instance, "bad")
    run_tiny(sqlite_instance, "bad")
    failed_ids = evaluation_storage_ids(sqlite_instance, passed=False)
    assert len(failed_ids) == 2 and len(set(failed_ids)) == 2  # two runs, two distinct storage ids

    result = tick(sqlite_instance)
    assert receiver.attempts == 2
    assert len(receiver.bodies) == 2
    for text, storage_id in zip(receiver.texts(), failed_ids, strict=True):
        assert "asset tiny_orders" in text
        assert "partition bad" in text
        assert "check invalid_ratio" in text
        assert "score 0.3," in text and "threshold 0.05." in text
        assert alert_id(storage_id) in text
    all_ids = evaluation_storage_ids(sqlite_instance, True) + failed_ids
    assert int(result.cursor) == max(all_ids)

    log = read_records(alerts_log_path(data_dir))
    assert [line["alert_id"] for line in log] == [alert_id(i) for i in failed_ids]
    assert {(line["asset"], line["partition"], line["check"], line["score"], line["threshold"]) for line in log} == {
        ("tiny_orders", "bad", "invalid_ratio", 0.3, 0.05)
    }

    again = tick(sqlite_instance, cursor=result.cursor)
    assert receiver.attempts == 2 and again.cursor == result.cursor
    assert len(read_records(alerts_log_path(data_dir))) == 2

    run_tiny(sqlite_instance, "bad")
    later = tick(sqlite_instance, cursor=again.cursor)
    assert len(receiver.bodies) == 3 and int(later.cursor) > int(again.cursor)
    assert "partition bad" in receiver.texts()[-1]


def test_passed_evaluations_produce_no_alert_but_advance_the_cursor(sqlite_instance, data_dir, receiver):
    run_tiny(sqlite_instance, "good")
    result = tick(sqlite_instance)
    assert receiver.attempts == 0
    assert read_records(alerts_log_path(data_dir)) == []
    assert int(result.cursor) == evaluation_storage_ids(sqlite_instance, passed=True)[0]
    assert Outbox(data_dir).entries(PENDING) == [] and Outbox(data_dir).entries(DELIVERED) == []


def test_lost_cursor_does_not_duplicate_alerts(sqlite_instance, data_dir, receiver):
    """A tick whose cursor was never saved is re-run from scratch: the outbox ids keep it at one alert."""
    run_tiny(sqlite_instance, "bad")
    tick(sqlite_instance)
    tick(sqlite_instance)  # same records again, no cursor
    assert receiver.attempts == 1
    assert len(read_records(alerts_log_path(data_dir))) == 1


@pytest.mark.parametrize("outage", ["refused", "http_500"])
def test_webhook_down_then_up_delivers_each_alert_once(sqlite_instance, data_dir, receiver, monkeypatch, outage):
    sensor = build_quality_gate_alerts(backoff_base_seconds=1.5, backoff_cap_seconds=5)
    run_tiny(sqlite_instance, "bad")
    run_tiny(sqlite_instance, "bad")
    if outage == "refused":
        monkeypatch.setenv(WEBHOOK_ENV, closed_port_url())
    else:
        receiver.status = 500

    first = tick(sqlite_instance, sensor=sensor)
    pending = Outbox(data_dir).entries(PENDING)
    assert [e["attempts"] for e in pending] == [1, 0]  # the round stops after the first failure
    assert pending[0]["next_attempt_at"] == pytest.approx(pending[0]["created_at"] + 1.5)
    assert pending[0]["last_error"] and "xoxSecretToken" not in pending[0]["last_error"]
    assert receiver.bodies == []
    # Both alerts are in the local log even while the webhook is down.
    assert len(read_records(alerts_log_path(data_dir))) == 2

    # The webhook comes back, but the first entry's backoff has not elapsed: it waits, the second goes.
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    receiver.status = 200
    second = tick(sqlite_instance, cursor=first.cursor, sensor=sensor)
    assert len(receiver.bodies) == 1
    assert [e["attempts"] for e in Outbox(data_dir).entries(PENDING)] == [1]

    time.sleep(max(0.0, pending[0]["next_attempt_at"] - time.time()) + 0.05)
    third = tick(sqlite_instance, cursor=second.cursor, sensor=sensor)
    tick(sqlite_instance, cursor=third.cursor, sensor=sensor)
    failed_ids = evaluation_storage_ids(sqlite_instance, passed=False)
    # Each alert received once: the second while the first waited out its backoff, then the first.
    assert len(receiver.bodies) == 2
    assert alert_id(failed_ids[1]) in receiver.texts()[0] and alert_id(failed_ids[0]) in receiver.texts()[1]
    assert Outbox(data_dir).entries(PENDING) == []
    delivered = Outbox(data_dir).entries(DELIVERED)
    assert [e["attempts"] for e in delivered] == [2, 1] and {e["webhook"] for e in delivered} == {"sent"}
    assert len(read_records(alerts_log_path(data_dir))) == 2


def test_entry_marked_delivered_before_a_crash_is_not_resent(data_dir):
    """A round that marked an entry delivered but died before moving it: the next round only moves it."""
    outbox = Outbox(data_dir)
    outbox.add(Alert(1, "r", "a", "p", "c", "ERROR", 1.0, 0.0, None, 0.0), now=0.0)
    sent = []
    outbox.deliver_due(0.0, sent.append, 1, 10, 5)
    assert len(sent) == 1
    entry = outbox.entries(DELIVERED)[0]
    # Put it back as the crash would have left it: marked, still under pending/.
    (outbox.root / DELIVERED / f"{entry['alert_id']}.json").rename(outbox.root / PENDING / f"{entry['alert_id']}.json")
    outbox.deliver_due(1.0, sent.append, 1, 10, 5)
    assert len(sent) == 1 and len(outbox.entries(DELIVERED)) == 1 and outbox.entries(PENDING) == []
    assert outbox.add(Alert(1, "r", "a", "p", "c", "ERROR", 1.0, 0.0, None, 0.0), now=2.0) is False


class Crash(Exception):
    """The process dying at a chosen point."""


@pytest.mark.parametrize("crash", ["before_append", "after_append"])
def test_crash_around_the_log_append_logs_the_alert_exactly_once(data_dir, monkeypatch, crash):
    """A round that died just before or just after appending the log line: the next round leaves one line."""
    outbox = Outbox(data_dir)
    outbox.add(Alert(1, "r", "a", "p", "c", "ERROR", 1.0, 0.0, None, 0.0), now=0.0)
    real_append = outbox_module.append_record

    def dying_append(path, record):
        if crash == "after_append":
            real_append(path, record)
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(outbox_module, "append_record", dying_append)
        with pytest.raises(Crash):
            outbox.deliver_due(0.0, None, 1, 10, 5)
    assert outbox.entries(PENDING)[0]["logged_at"] is None

    report = outbox.deliver_due(1.0, None, 1, 10, 5)
    assert [line["alert_id"] for line in read_records(alerts_log_path(data_dir))] == [alert_id(1)]
    assert report.logged == 1 and outbox.entries(DELIVERED)[0]["logged_at"] == 1.0


def test_without_a_webhook_alerts_go_to_the_log_only(sqlite_instance, data_dir, monkeypatch):
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    run_tiny(sqlite_instance, "bad")
    tick(sqlite_instance)
    assert len(read_records(alerts_log_path(data_dir))) == 1
    assert [e["webhook"] for e in Outbox(data_dir).entries(DELIVERED)] == ["not configured"]


def test_webhook_url_never_appears_in_logs(sqlite_instance, data_dir, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    down = closed_port_url()
    monkeypatch.setenv(WEBHOOK_ENV, down)
    run_tiny(sqlite_instance, "bad")
    tick(sqlite_instance)
    captured = capfd.readouterr()  # the sensor's logger writes to the process's stderr
    written = [p.read_text() for p in data_dir.rglob("*") if p.is_file()]
    assert "failed 1" in captured.err and "webhook set" in captured.err  # the sensor did log its summary
    assert any("unreachable" in text for text in written)  # and recorded the error, redacted
    for text in [caplog.text, captured.out, captured.err, *written]:
        assert "xoxSecretToken" not in text and down not in text


# --- the project's own gates and definitions ----------------------------------------------------


def test_failed_project_gate_is_alerted_with_its_partition(sqlite_instance, data_dir, receiver):
    assets = [defs.get_assets_def(key) for key in ["raw_volume", "chunk_partitions", "processed_chunks"]]
    resources = {**build_resources(), "quality": QualityResource(max_invalid_ratio=0.0)}
    result = dg.materialize(
        assets, partition_key="2024-01-01-03:00", resources=resources, instance=sqlite_instance, raise_on_error=False
    )
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed

    tick(sqlite_instance)
    assert len(receiver.bodies) == len(failed)
    texts = " | ".join(receiver.texts())
    assert "asset processed_chunks" in texts and "partition 2024-01-01-03:00" in texts and "check invalid_ratio" in texts
    for evaluation in failed:
        score, threshold = evaluation.metadata["score"].value, evaluation.metadata["threshold"].value
        assert threshold == 0.0  # max_invalid_ratio=0.0, formatted "0" and followed by the sentence's full stop
        assert f"check {evaluation.check_name}: score {score:.6g}, threshold 0. " in texts


def test_sensor_is_registered_and_on_by_default():
    sensor = defs.get_sensor_def("quality_gate_alerts")
    assert sensor.minimum_interval_seconds == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
