"""run_failure_alerts: one alert per run that failed for good, with pipeline, partition, run, step and
error; none for attempts that are retried; exactly once with concurrent tickers and through an outage."""

import time
from collections import Counter

import dagster as dg
import pytest

from scalable_pipeline.core.constants import PIPELINE_TAG
from scalable_pipeline.core.jsonl import read_records
from scalable_pipeline.events.alert_log import alerts_log_path
from scalable_pipeline.events.outbox import DELIVERED, PENDING, Outbox
from scalable_pipeline.events.run_alerts import ALERT, AUTO_RETRY_RUN_ID_TAG, RETRIED, WAIT, WILL_RETRY_TAG, retry_verdict
from scalable_pipeline.events.run_failure_alerts import build_run_failure_alerts
from scalable_pipeline.events.webhook import WEBHOOK_ENV
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline_tests.conftest import Clock
from scalable_pipeline_tests.test_quality_gate_alerts import closed_port_url, run_at_once

PARTS = dg.StaticPartitionsDefinition(["p1", "p2"])
ATTEMPTS: Counter = Counter()


@dg.asset(partitions_def=PARTS, group_name="orders_pipeline")
def flaky_orders(context: dg.AssetExecutionContext):
    raise dg.Failure(description=f"landing file for {context.partition_key} breaks rule 'readable_table'\nsecond line")


@dg.asset(group_name="orders_pipeline")
def crashing_orders():
    raise ConnectionError("source unreachable: connection refused\ntraceback follows")


@dg.asset(group_name="orders_pipeline", retry_policy=dg.RetryPolicy(max_retries=2))
def recovers_on_retry():
    ATTEMPTS["recovers"] += 1
    if ATTEMPTS["recovers"] < 3:
        raise ConnectionError("transient")
    return 1


@dg.asset(group_name="orders_pipeline", retry_policy=dg.RetryPolicy(max_retries=2))
def never_recovers():
    raise ConnectionError("still down")


DEFINITIONS = dg.Definitions(assets=[flaky_orders, crashing_orders, recovers_on_retry, never_recovers])
REPOSITORY = DEFINITIONS.get_repository_def()


@pytest.fixture
def retrying_instance():
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True, "max_retries": 1}}) as instance:
        yield instance


def fail(instance, asset=flaky_orders, partition: str | None = "p1", tags: dict | None = None) -> str:
    """Materialize ``asset`` as the UI does (the asset job, with an asset selection); it fails."""
    result = DEFINITIONS.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[asset.key], partition_key=partition, instance=instance, raise_on_error=False, tags=tags
    )
    assert not result.success
    return result.run_id


class Ticker:
    def __init__(self, instance, clock=time.time, **settings):
        self.instance = instance
        self.sensor = build_run_failure_alerts({"scalable_data_processing": "scalable_data_processing"}, clock=clock, **settings)
        self.cursor: str | None = None

    def tick(self, cursor: str | None = None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor or self.cursor,
            repository_def=REPOSITORY,
            resources={"data_store": DataStoreResource()},
        )
        result = self.sensor(context)
        self.cursor = result.cursor
        return result


def alert_ids(texts: list[str]) -> list[str]:
    return [text.rsplit("alert ", 1)[1].rstrip(")") for text in texts]


def test_retry_verdict():
    assert retry_verdict({}, 100.0, 101.0, 600) == ALERT
    assert retry_verdict({WILL_RETRY_TAG: "false"}, 100.0, 101.0, 600) == ALERT
    assert retry_verdict({WILL_RETRY_TAG: "true"}, 100.0, 101.0, 600) == WAIT
    assert retry_verdict({WILL_RETRY_TAG: "true"}, 100.0, 700.0, 600) == ALERT  # the retry never came
    assert retry_verdict({WILL_RETRY_TAG: "true", AUTO_RETRY_RUN_ID_TAG: "r2"}, 100.0, 101.0, 600) == RETRIED


def test_a_failed_run_alerts_once_naming_pipeline_partition_run_step_and_error(sqlite_instance, receiver, data_dir):
    run_id = fail(sqlite_instance)
    crashed = fail(sqlite_instance, crashing_orders, partition=None, tags={PIPELINE_TAG: "orders_db"})
    ticker = Ticker(sqlite_instance)
    ticker.tick()
    for _ in range(3):
        ticker.tick()
    texts = sorted(receiver.texts())
    assert len(texts) == 2
    assert sorted(alert_ids(texts)) == sorted([f"run-failure-{run_id}", f"run-failure-{crashed}"])
    flaky = next(text for text in texts if run_id in text)
    assert flaky == (
        f"Run failed: pipeline orders_pipeline, partition p1, run {run_id}, step flaky_orders: "
        f"landing file for p1 breaks rule 'readable_table' (alert run-failure-{run_id})"
    )
    crash = next(text for text in texts if crashed in text)
    assert "pipeline orders_db, partition none" in crash and "step crashing_orders" in crash
    assert "ConnectionError: source unreachable: connection refused (alert" in crash
    logged = read_records(alerts_log_path(data_dir))
    assert sorted(line["alert_id"] for line in logged) == sorted(alert_ids(texts))
    assert {line["kind"] for line in logged} == {"run_failure"}


def test_op_retries_alert_only_when_the_last_attempt_fails(sqlite_instance, receiver):
    ATTEMPTS.clear()
    assert dg.materialize([recovers_on_retry], instance=sqlite_instance).success  # failed twice, then succeeded
    failed = fail(sqlite_instance, never_recovers, partition=None)
    Ticker(sqlite_instance).tick()
    assert alert_ids(receiver.texts()) == [f"run-failure-{failed}"]
    assert "ConnectionError: still down" in receiver.texts()[0]


@pytest.mark.slow
def test_a_run_that_is_retried_alerts_only_for_its_final_attempt(retrying_instance, receiver):
    first = fail(retrying_instance)
    assert retrying_instance.get_run_by_id(first).tags[WILL_RETRY_TAG] == "true"
    ticker = Ticker(retrying_instance)
    waiting = ticker.tick()
    assert receiver.texts() == [] and "1 waiting for a retry" in waiting.skip_reason.skip_message
    # What the retry daemon does: launch the retry (retry number 1 of 1) and tag the failed run with it.
    # execute_in_process cannot put the retry in the first run's group, so the test tags the retry as Dagster
    # tags the last allowed attempt (retry 1 of max 1: will_retry false).
    second = fail(retrying_instance, tags={"dagster/retry_number": "1"})
    retrying_instance.add_run_tags(first, {AUTO_RETRY_RUN_ID_TAG: second})
    retrying_instance.add_run_tags(second, {WILL_RETRY_TAG: "false"})
    ticker.tick()
    ticker.tick()
    assert alert_ids(receiver.texts()) == [f"run-failure-{second}"]


def test_a_retry_that_never_comes_alerts_after_the_grace_time(retrying_instance, receiver):
    run_id = fail(retrying_instance)
    failed_at = retrying_instance.get_run_record_by_id(run_id).end_time
    clock = Clock(failed_at + 599)
    ticker = Ticker(retrying_instance, clock=clock, retry_grace_seconds=600)
    ticker.tick()
    assert receiver.texts() == []
    clock.now = failed_at + 600
    ticker.tick()
    assert alert_ids(receiver.texts()) == [f"run-failure-{run_id}"]
    assert "a retry was due but none was launched" in receiver.texts()[0]


@pytest.mark.slow
def test_concurrent_tickers_through_a_webhook_outage_deliver_each_alert_once(sqlite_instance, receiver, data_dir, monkeypatch):
    run_ids = [fail(sqlite_instance, partition=partition) for partition in ["p1", "p2", "p1"]]
    clock = Clock(time.time())

    def fresh_tick() -> None:  # a ticker of its own, from no cursor (the daemon and a preview, say)
        Ticker(sqlite_instance, clock=clock, backoff_base_seconds=5, backoff_cap_seconds=5).tick()

    monkeypatch.setenv(WEBHOOK_ENV, closed_port_url())
    assert run_at_once(4, fresh_tick) == []
    fresh_tick()
    assert receiver.bodies == []
    assert len(Outbox(data_dir).entries(PENDING)) == 3
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)  # the webhook is back and the backoff is over
    clock.now += 5
    assert run_at_once(4, fresh_tick) == []
    fresh_tick()
    expected = {f"run-failure-{run_id}": 1 for run_id in run_ids}
    assert Counter(alert_ids(receiver.texts())) == expected
    assert receiver.attempts == 3
    assert len(Outbox(data_dir).entries(DELIVERED)) == 3
    assert Counter(line["alert_id"] for line in read_records(alerts_log_path(data_dir))) == expected
