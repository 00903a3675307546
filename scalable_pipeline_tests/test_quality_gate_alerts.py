"""quality_gate_alerts: one alert per failed check evaluation, delivered once, through a durable outbox."""

import logging
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from scalable_pipeline.core.atomic import atomic_write_json
from scalable_pipeline.core.jsonl import read_records
from scalable_pipeline.definitions import defs
from scalable_pipeline.events import outbox as outbox_module
from scalable_pipeline.events.alert_log import alerts_log_path
from scalable_pipeline.events.cursor import ExecutionCursor, parse_cursor
from scalable_pipeline.events.evaluations import evaluation_of, failed_alerts, scan_executions
from scalable_pipeline.events.messages import Alert, alert_id, alert_text
from scalable_pipeline.events.outbox import CLAIMS, DELIVERED, PENDING, DeliveryPolicy, Outbox
from scalable_pipeline.events.quality_gate_alerts import build_quality_gate_alerts, quality_gate_alerts
from scalable_pipeline.events.retry import RetryLimits, retry_delay
from scalable_pipeline.events.webhook import WEBHOOK_ENV, WebhookError, post_json, redact
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.quality.gate_results import check_result
from scalable_pipeline.quality.gates import ratio_at_most
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline_tests.conftest import Clock, Crash, shipped_resources
from scalable_pipeline_tests.test_postgres_storage import POSTGRES_URL, postgres_database  # noqa: F401 (a fixture)
from scalable_pipeline_tests.webhook_receiver import SECRET_PATH

PARTS = dg.StaticPartitionsDefinition(["good", "bad"])
TINY_CHECK = dg.AssetCheckKey(dg.AssetKey("tiny_orders"), "invalid_ratio")
POLICY = DeliveryPolicy(backoff_base_seconds=1, backoff_cap_seconds=10, budget_seconds=5, claim_timeout_seconds=60)
# Held by a test while a run of ``held_orders`` is inside its op, between planning and evaluating its check.
HELD_STARTED, HELD_RELEASE = threading.Event(), threading.Event()


@dg.asset(partitions_def=PARTS, check_specs=[dg.AssetCheckSpec("invalid_ratio", asset="tiny_orders")])
def tiny_orders(context: dg.AssetExecutionContext):
    """10 rows; partition ``bad`` has 3 invalid (ratio 0.3 > 0.05), ``good`` has none."""
    invalid = 3 if context.partition_key == "bad" else 0
    yield dg.Output(10)
    yield check_result("tiny_orders", ratio_at_most("invalid_ratio", invalid, 10, 0.05, "invalid rows"))


@dg.asset(check_specs=[dg.AssetCheckSpec("invalid_ratio", asset="held_orders")])
def held_orders():
    """Fails its gate, but only once the test releases it."""
    HELD_STARTED.set()
    HELD_RELEASE.wait(timeout=60)
    yield dg.Output(10)
    yield check_result("held_orders", ratio_at_most("invalid_ratio", 3, 10, 0.05, "invalid rows"))


@dg.asset(check_specs=[dg.AssetCheckSpec("invalid_ratio", asset="broken_orders")])
def broken_orders():
    """Fails before its gate is evaluated: the check stays planned."""
    raise RuntimeError("source unreachable")


TEST_REPOSITORY = dg.Definitions(assets=[tiny_orders, held_orders, broken_orders]).get_repository_def()


def closed_port_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


def run_tiny(instance, partition_key: str) -> None:
    dg.materialize([tiny_orders], partition_key=partition_key, instance=instance)


def tick(instance, cursor=None, sensor=quality_gate_alerts, repository=TEST_REPOSITORY) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=repository, resources={"data_store": DataStoreResource()}
    )
    return sensor(context)


def execution_ids(instance, passed: bool, check=TINY_CHECK) -> list[int]:
    """Ids of the check's evaluated executions with that outcome, oldest first."""
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=1000)
    return sorted(r.id for r in history if (found := evaluation_of(r)) and found.passed is passed)


def execution_created_at(instance) -> float:
    """When the newest execution of the tiny check was created (planned)."""
    return instance.event_log_storage.get_asset_check_execution_history(TINY_CHECK, limit=1)[0].create_timestamp


def make_alert(execution_id: int) -> Alert:
    return Alert(execution_id, "r", "a", "p", "c", "ERROR", 1.0, 0.0, None, float(execution_id))


def logged_ids(data_dir) -> list[str]:
    return [line["alert_id"] for line in read_records(alerts_log_path(data_dir))]


def entry_claims(data_dir) -> list[Path]:
    """Claim files on alerts (the alerts log's own claim is left out)."""
    return sorted((Path(data_dir) / "alerts" / "outbox" / CLAIMS).glob("check-exec-*.json"))


def webhook_down(payload: dict) -> None:
    raise WebhookError("HTTP 503 Service Unavailable")


# --- pure functions -----------------------------------------------------------------------------


def test_backoff_doubles_from_base_up_to_cap():
    """The outbox's backoff: no jitter, attempt n waits ``retry_delay(n - 1)``."""
    limits = RetryLimits(delay_seconds=30, max_delay_seconds=600, jitter_fraction=0.0)
    assert [retry_delay(n - 1, limits, 0.0) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]
    policy = DeliveryPolicy(30, 600, 20, 300)
    assert [policy.retry_at(1000.0, n) - 1000.0 for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]


def test_alert_text_names_asset_partition_check_score_and_threshold():
    alert = Alert(7, "run-1", "processed_chunks", "2026-01-05-10:00", "invalid_ratio", "ERROR", 0.0123, 0.01, "too many", 0.0)
    text = alert_text(alert)
    expected = ("processed_chunks", "2026-01-05-10:00", "invalid_ratio", "score 0.0123", "threshold 0.01", "ERROR")
    for part in (*expected, "alert check-exec-000000000007)"):
        assert part in text
    assert alert_text(Alert(7, "r", "a", None, "c", "WARN", None, None, None, 0.0)).count("n/a") == 2


def test_alert_ids_sort_in_execution_order():
    assert sorted([alert_id(100), alert_id(9), alert_id(12)]) == [alert_id(9), alert_id(12), alert_id(100)]


def test_cursor_round_trip_and_the_previous_versions_cursor():
    cursor = ExecutionCursor(after=42, planned={"tiny_orders:invalid_ratio": [40, 7], "x:y": []})
    assert parse_cursor(cursor.to_json()) == (ExecutionCursor(42, {"tiny_orders:invalid_ratio": [7, 40]}), False)
    assert parse_cursor(None) == (None, False)
    assert parse_cursor("1234") == (None, True)  # a bare event storage id: read as no cursor, flagged
    assert cursor.lowest_unread("tiny_orders:invalid_ratio") == 7 and cursor.lowest_unread("x:y") == 43
    assert cursor.needs_reading("tiny_orders:invalid_ratio", 40) and not cursor.needs_reading("x:y", 40)


def test_redact_removes_url_host_and_secret_path():
    message = redact(f"could not reach {SECRET_PATH} at hooks.example.com", "https://hooks.example.com" + SECRET_PATH)
    assert "xoxSecretToken" not in message and "hooks.example.com" not in message


def test_post_json_errors_never_name_the_url():
    for url in (closed_port_url(), "notascheme://" + SECRET_PATH[1:]):
        with pytest.raises(WebhookError) as error:
            post_json(url, {"text": "x"}, timeout=1)
        assert "xoxSecretToken" not in str(error.value) and "127.0.0.1" not in str(error.value)


# --- the sensor against a real instance and a local webhook -------------------------------------


@pytest.mark.slow
def test_each_failed_evaluation_becomes_exactly_one_alert(sqlite_instance, data_dir, receiver):
    run_tiny(sqlite_instance, "good")
    run_tiny(sqlite_instance, "bad")
    run_tiny(sqlite_instance, "bad")
    failed_ids = execution_ids(sqlite_instance, passed=False)
    assert len(failed_ids) == 2 and len(set(failed_ids)) == 2  # two runs, two distinct execution ids

    result = tick(sqlite_instance)
    assert receiver.attempts == 2
    assert len(receiver.bodies) == 2
    for text, execution_id in zip(receiver.texts(), failed_ids, strict=True):
        assert "asset tiny_orders" in text
        assert "partition bad" in text
        assert "check invalid_ratio" in text
        assert "score 0.3," in text and "threshold 0.05." in text
        assert alert_id(execution_id) in text
    all_ids = execution_ids(sqlite_instance, True) + failed_ids
    assert parse_cursor(result.cursor)[0] == ExecutionCursor(after=max(all_ids))

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
    assert len(receiver.bodies) == 3 and parse_cursor(later.cursor)[0].after > parse_cursor(again.cursor)[0].after
    assert "partition bad" in receiver.texts()[-1]


def test_passed_evaluations_produce_no_alert_but_advance_the_cursor(sqlite_instance, data_dir, receiver):
    run_tiny(sqlite_instance, "good")
    result = tick(sqlite_instance)
    assert receiver.attempts == 0
    assert read_records(alerts_log_path(data_dir)) == []
    assert parse_cursor(result.cursor)[0] == ExecutionCursor(after=execution_ids(sqlite_instance, passed=True)[0])
    assert Outbox(data_dir).entries(PENDING) == [] and Outbox(data_dir).entries(DELIVERED) == []


def test_first_tick_looks_back_only_as_far_as_the_lookback(sqlite_instance, data_dir, receiver):
    """Evaluations created before the lookback window are skipped, and the cursor passes them."""
    run_tiny(sqlite_instance, "bad")
    late = Clock(execution_created_at(sqlite_instance) + 3600.0)
    result = tick(sqlite_instance, sensor=build_quality_gate_alerts(initial_lookback_seconds=1800.0, clock=late))
    assert receiver.attempts == 0 and parse_cursor(result.cursor)[0].after == execution_ids(sqlite_instance, False)[0]
    run_tiny(sqlite_instance, "bad")
    tick(sqlite_instance, cursor=result.cursor, sensor=build_quality_gate_alerts(clock=late))
    assert len(receiver.bodies) == 1 and alert_id(execution_ids(sqlite_instance, False)[1]) in receiver.texts()[0]


def test_lost_cursor_does_not_duplicate_alerts(sqlite_instance, data_dir, receiver):
    """A tick whose cursor was never saved is re-run from scratch: the outbox ids keep it at one alert."""
    run_tiny(sqlite_instance, "bad")
    tick(sqlite_instance)
    tick(sqlite_instance)  # same records again, no cursor
    assert receiver.attempts == 1
    assert len(read_records(alerts_log_path(data_dir))) == 1


def test_an_earlier_run_evaluated_after_a_later_one_is_still_alerted(sqlite_instance, data_dir, receiver):
    """Execution ids follow run creation: a run created first can fail its gate after the cursor passed a later one."""
    HELD_STARTED.clear()
    HELD_RELEASE.clear()
    held = threading.Thread(target=lambda: dg.materialize([held_orders], instance=sqlite_instance, raise_on_error=False))
    held.start()
    try:
        assert HELD_STARTED.wait(timeout=60)  # its check is planned (id 1), not yet evaluated
        run_tiny(sqlite_instance, "bad")  # created and evaluated after it (id 2)
        first = tick(sqlite_instance)
        assert len(receiver.bodies) == 1 and "asset tiny_orders" in receiver.texts()[0]
        held_check = dg.AssetCheckKey(dg.AssetKey("held_orders"), "invalid_ratio")
        cursor = parse_cursor(first.cursor)[0]
        assert cursor.after == execution_ids(sqlite_instance, False)[0]
        assert cursor.planned == {held_check.to_user_string(): [cursor.after - 1]}
    finally:
        HELD_RELEASE.set()
        held.join()
    second = tick(sqlite_instance, cursor=first.cursor)
    assert len(receiver.bodies) == 2 and "asset held_orders" in receiver.texts()[1]
    assert parse_cursor(second.cursor)[0].planned == {}
    tick(sqlite_instance, cursor=second.cursor)
    assert len(receiver.bodies) == 2 and len(logged_ids(data_dir)) == 2


def test_a_check_whose_run_failed_before_evaluating_is_not_kept_open(sqlite_instance, data_dir, receiver):
    dg.materialize([broken_orders], instance=sqlite_instance, raise_on_error=False)
    result = tick(sqlite_instance)
    assert receiver.attempts == 0
    assert parse_cursor(result.cursor)[0] == ExecutionCursor(after=1)  # read, planned, its run over: done with


def test_previous_versions_cursor_skips_evaluations_it_already_alerted(sqlite_instance, data_dir, receiver):
    """The previous version named alerts after event storage ids; its outbox entries are recognised by content."""
    run_tiny(sqlite_instance, "bad")
    run_tiny(sqlite_instance, "bad")
    old, new = failed_alerts(sqlite_instance, scan_executions(sqlite_instance, [TINY_CHECK], None, since=0.0).evaluated)
    outbox = Outbox(data_dir)
    old_entry = {"alert_id": "check-eval-000000000017", "alert": {**old.as_dict(), "alert_id": "check-eval-000000000017"}}
    atomic_write_json(outbox.root / DELIVERED / "check-eval-000000000017.json", old_entry)

    result = tick(sqlite_instance, cursor="17")
    assert receiver.texts() == [alert_text(new)]
    assert parse_cursor(result.cursor) == (ExecutionCursor(after=new.execution_id), False)


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["refused", "http_500"])
def test_webhook_down_then_up_delivers_each_alert_once(sqlite_instance, data_dir, receiver, monkeypatch, outage):
    clock = Clock(1000.0)  # the first tick looks back from 1000 - 24 h: every run of the test is inside
    sensor = build_quality_gate_alerts(backoff_base_seconds=1.5, backoff_cap_seconds=5, clock=clock)
    run_tiny(sqlite_instance, "bad")
    run_tiny(sqlite_instance, "bad")
    if outage == "refused":
        monkeypatch.setenv(WEBHOOK_ENV, closed_port_url())
    else:
        receiver.status = 500

    first = tick(sqlite_instance, sensor=sensor)
    pending = Outbox(data_dir).entries(PENDING)
    assert [e["attempts"] for e in pending] == [1, 0]  # the round stops after the first failure
    assert pending[0]["next_attempt_at"] == clock.now + 1.5
    assert pending[0]["last_error"] and "xoxSecretToken" not in pending[0]["last_error"]
    assert receiver.bodies == []
    # Both alerts are in the local log even while the webhook is down.
    assert len(read_records(alerts_log_path(data_dir))) == 2

    # The webhook comes back, but the first entry's backoff has not elapsed: it waits, the second goes.
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    receiver.status = 200
    clock.now += 1.0
    second = tick(sqlite_instance, cursor=first.cursor, sensor=sensor)
    assert len(receiver.bodies) == 1
    assert [e["attempts"] for e in Outbox(data_dir).entries(PENDING)] == [1]

    clock.now += 0.5  # exactly when the backoff ends
    third = tick(sqlite_instance, cursor=second.cursor, sensor=sensor)
    tick(sqlite_instance, cursor=third.cursor, sensor=sensor)
    failed_ids = execution_ids(sqlite_instance, passed=False)
    # Each alert received once: the second while the first waited out its backoff, then the first.
    assert len(receiver.bodies) == 2
    assert alert_id(failed_ids[1]) in receiver.texts()[0] and alert_id(failed_ids[0]) in receiver.texts()[1]
    assert Outbox(data_dir).entries(PENDING) == []
    delivered = Outbox(data_dir).entries(DELIVERED)
    assert [e["attempts"] for e in delivered] == [2, 1] and {e["webhook"] for e in delivered} == {"sent"}
    assert len(read_records(alerts_log_path(data_dir))) == 2


def run_at_once(count: int, work) -> list[Exception]:
    """Run ``work`` in ``count`` threads released together by a barrier; the errors they raised."""
    barrier, errors = threading.Barrier(count), []

    def worker():
        try:
            barrier.wait(timeout=60)
            work()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_ticks_send_and_log_each_alert_once(sqlite_instance, data_dir, receiver):
    """``dagster sensor preview`` while the daemon ticks, and more: every tick at once, none fails."""
    for partition in ["bad", "good", "bad", "bad"]:
        run_tiny(sqlite_instance, partition)
    errors = run_at_once(4, lambda: tick(sqlite_instance))
    assert errors == []
    tick(sqlite_instance)  # whatever a busy tick skipped, the next one delivers
    expected = {alert_id(i) for i in execution_ids(sqlite_instance, passed=False)}
    assert len(expected) == 3
    assert Counter(text.rsplit("alert ", 1)[1].rstrip(")") for text in receiver.texts()) == dict.fromkeys(expected, 1)
    assert receiver.attempts == 3
    assert Counter(logged_ids(data_dir)) == dict.fromkeys(expected, 1)


@pytest.mark.services
@pytest.mark.skipif(not POSTGRES_URL, reason="SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set (PostgreSQL tests off)")
def test_alerts_from_a_postgres_instance(postgres_database, data_dir, receiver):  # noqa: F811
    """The same public reads on PostgreSQL storage: each failed evaluation alerted once, with its partition."""
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": postgres_database}}}) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        for partition in ["bad", "good", "bad"]:
            run_tiny(instance, partition)
        first = tick(instance)
        failed_ids = execution_ids(instance, passed=False)
        assert len(failed_ids) == 2
        assert [text.rsplit("alert ", 1)[1].rstrip(")") for text in receiver.texts()] == [alert_id(i) for i in failed_ids]
        assert all("partition bad" in text for text in receiver.texts())
        assert parse_cursor(first.cursor)[0] == ExecutionCursor(after=max(failed_ids + execution_ids(instance, passed=True)))

        again = tick(instance, cursor=first.cursor)
        run_tiny(instance, "bad")
        tick(instance, cursor=again.cursor)
        assert receiver.attempts == 3 and len(logged_ids(data_dir)) == 3


# --- the outbox on its own ----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["new", "logged"])
def test_concurrent_rounds_deliver_and_log_each_alert_exactly_once(data_dir, state):
    """Tickers (each its own Outbox, as separate processes or hosts would be) add and deliver at once.

    ``new``: no entry is logged yet (they contend for the log's claim); ``logged``: every entry is logged
    and due again after a webhook outage (they contend for each entry's claim).
    """
    alerts = [make_alert(i) for i in range(1, 41)]
    if state == "logged":
        outbox = Outbox(data_dir)
        for alert in alerts:
            outbox.add(alert, now=0.0)
        outbox.deliver_due(0.0, webhook_down, POLICY)
        assert len(logged_ids(data_dir)) == 40
    posts: list = []

    def ticker():
        outbox = Outbox(data_dir)
        for alert in alerts:
            outbox.add(alert, now=100.0)
        outbox.deliver_due(100.0, posts.append, POLICY)

    errors = run_at_once(8, ticker)
    assert errors == []
    assert max(Counter(post["text"] for post in posts).values()) == 1  # nothing sent twice, even before draining
    Outbox(data_dir).deliver_due(101.0, posts.append, POLICY)

    expected = {alert.alert_id: 1 for alert in alerts}
    assert Counter(post["text"].rsplit("alert ", 1)[1].rstrip(")") for post in posts) == expected
    assert Counter(logged_ids(data_dir)) == expected
    assert Outbox(data_dir).entries(PENDING) == [] and len(Outbox(data_dir).entries(DELIVERED)) == 40
    assert entry_claims(data_dir) == []


CRASHING_TICKER = """
import os, sys
from scalable_pipeline.events.outbox import DeliveryPolicy, Outbox

def send(payload):
    os._exit(3)  # the process dies during the POST: it holds the entry's and the log's claims

Outbox(sys.argv[1]).deliver_due(0.0, send, DeliveryPolicy(1, 10, 5, claim_timeout_seconds=60))
"""


def test_claim_left_by_a_crashed_ticker_is_taken_over_after_the_timeout(data_dir):
    outbox = Outbox(data_dir)
    outbox.add(make_alert(1), now=0.0)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_TICKER, str(data_dir)],
        env={**os.environ, "PYTHONPATH": str(Path(outbox_module.__file__).parents[2])},
        check=False,
    )
    assert crashed.returncode == 3
    assert logged_ids(data_dir) == [alert_id(1)] and len(entry_claims(data_dir)) == 1

    sent = []
    before = outbox.deliver_due(59.0, sent.append, POLICY)  # the claim may still be held by a live, slow ticker
    assert sent == [] and before.busy == 1 and len(outbox.entries(PENDING)) == 1
    after = outbox.deliver_due(60.0, sent.append, POLICY)
    assert len(sent) == 1 and after.delivered == 1 and after.logged == 0
    outbox.deliver_due(500.0, sent.append, POLICY)
    assert len(sent) == 1 and logged_ids(data_dir) == [alert_id(1)]
    assert outbox.entries(PENDING) == [] and [e["webhook"] for e in outbox.entries(DELIVERED)] == ["sent"]
    assert entry_claims(data_dir) == []


def test_add_never_brings_back_a_claimed_or_delivered_alert(data_dir, monkeypatch):
    outbox, other = Outbox(data_dir), Outbox(data_dir)
    alert = make_alert(1)
    assert outbox.add(alert, now=0.0) is True
    claim = other.claims.take(alert.alert_id, now=0.0, timeout=60)
    assert claim is not None and outbox.add(alert, now=1.0) is False  # claimed: still the one entry
    other.claims.release(claim, now=1.0)

    # Another ticker delivers it between add's look at delivered/ and its create-if-absent of the pending file.
    sent = []
    real_create = outbox_module.create_json_exclusive

    def delivered_meanwhile(path, document):
        other.deliver_due(2.0, sent.append, POLICY)
        return real_create(path, document)

    with monkeypatch.context() as patch:
        patch.setattr(outbox_module, "create_json_exclusive", delivered_meanwhile)
        assert outbox.add(alert, now=2.0) is False
    assert outbox.entries(PENDING) == [] and len(sent) == 1
    assert outbox.add(alert, now=3.0) is False
    outbox.deliver_due(4.0, sent.append, POLICY)
    assert len(sent) == 1 and logged_ids(data_dir) == [alert.alert_id]


@pytest.mark.parametrize("left", ["delivered_written", "marked_by_previous_version"])
def test_entry_delivered_before_a_crash_is_not_resent(data_dir, left):
    """A round that died between recording the delivery and removing the pending file: the next round only tidies."""
    outbox = Outbox(data_dir)
    outbox.add(make_alert(1), now=0.0)
    sent = []
    outbox.deliver_due(0.0, sent.append, POLICY)
    assert len(sent) == 1
    entry = outbox.entries(DELIVERED)[0]
    pending_path = outbox.root / PENDING / f"{entry['alert_id']}.json"
    if left == "delivered_written":  # this version: delivered/ written, pending/ not yet removed
        atomic_write_json(pending_path, {**entry, "status": PENDING, "delivered_at": None, "webhook": None})
    else:  # the previous version marked the entry delivered in place, then died before moving it
        (outbox.root / DELIVERED / f"{entry['alert_id']}.json").rename(pending_path)
    outbox.deliver_due(1.0, sent.append, POLICY)
    assert len(sent) == 1 and len(outbox.entries(DELIVERED)) == 1 and outbox.entries(PENDING) == []
    assert outbox.add(make_alert(1), now=2.0) is False
    assert logged_ids(data_dir) == [alert_id(1)] and entry_claims(data_dir) == []


@pytest.mark.parametrize("crash", ["before_append", "after_append"])
def test_crash_around_the_log_append_logs_the_alert_exactly_once(data_dir, monkeypatch, crash):
    """A round that died just before or just after appending the log line: the next round leaves one line."""
    outbox = Outbox(data_dir)
    outbox.add(make_alert(1), now=0.0)
    real_append = outbox_module.append_record

    def dying_append(path, record):
        if crash == "after_append":
            real_append(path, record)
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(outbox_module, "append_record", dying_append)
        with pytest.raises(Crash):
            outbox.deliver_due(0.0, None, POLICY)
    assert outbox.entries(PENDING)[0]["logged_at"] is None

    report = outbox.deliver_due(1.0, None, POLICY)
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


@pytest.mark.slow
def test_failed_project_gate_is_alerted_with_its_partition(sqlite_instance, data_dir, receiver):
    assets = [defs.get_assets_def(key) for key in ["raw_volume", "chunk_partitions", "processed_chunks"]]
    resources = shipped_resources(quality=QualityResource(max_invalid_ratio=0.0))
    result = dg.materialize(
        assets, partition_key="2026-01-05-03:00", resources=resources, instance=sqlite_instance, raise_on_error=False
    )
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed

    tick(sqlite_instance, repository=defs.get_repository_def())
    assert len(receiver.bodies) == len(failed)
    texts = " | ".join(receiver.texts())
    assert "asset processed_chunks" in texts and "partition 2026-01-05-03:00" in texts and "check invalid_ratio" in texts
    for evaluation in failed:
        score, threshold = evaluation.metadata["score"].value, evaluation.metadata["threshold"].value
        assert threshold == 0.0  # max_invalid_ratio=0.0, formatted "0" and followed by the sentence's full stop
        assert f"check {evaluation.check_name}: score {score:.6g}, threshold 0. " in texts


def test_sensor_is_registered_and_on_by_default():
    sensor = defs.resolve_sensor_def("quality_gate_alerts")
    assert sensor.minimum_interval_seconds == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
