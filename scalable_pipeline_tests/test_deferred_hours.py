"""Deferral for pipelines launched by the clock: the schedule defers hours while the source's circuit is
open, and the sensor launches them once a trial call closes it."""

from datetime import datetime, timezone

import dagster as dg
import pytest

from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.sources.deferred_hours import build_deferred_hours_sensor, build_deferring_schedule
from scalable_pipeline.sources.deferred_hours_store import DeferredHours
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.resource import LandingFileSource, SyntheticOrderSource
from scalable_pipeline_tests.conftest import ManualClockBreaker

NOW = datetime(2026, 3, 6, 12, 0, 5, tzinfo=timezone.utc).timestamp()


def outage():
    raise SourceUnavailableError("orders database unreachable")


@pytest.fixture
def setup(tmp_path, instance):
    ManualClockBreaker.seconds[0] = NOW
    breakers = ManualClockBreaker(failure_threshold=1, cooldown_seconds=300)
    data_store = DataStoreResource(data_dir=str(tmp_path / "data"))
    clock = lambda: ManualClockBreaker.seconds[0]  # noqa: E731
    schedule = build_deferring_schedule("scalable_data_processing", "scalable_data_processing", clock=clock)
    sensor = build_deferred_hours_sensor("scalable_data_processing", "scalable_data_processing", clock=clock)
    resources = {"data_store": data_store, "circuit_breaker": breakers, "source": SyntheticOrderSource()}
    return schedule, sensor, resources, breakers.breaker("source", data_store), instance


def schedule_tick(schedule, resources, instance, hour: int):
    at = datetime(2026, 3, 6, hour, 0, tzinfo=timezone.utc)
    return schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=at, resources=resources))


def sensor_tick(sensor, resources, instance):
    return sensor(dg.build_sensor_context(instance=instance, resources=resources))


def test_a_closed_circuit_launches_the_hour(setup):
    schedule, _, resources, _, instance = setup
    request = schedule_tick(schedule, resources, instance, 12)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2026-03-06-11:00"


def test_hours_are_deferred_while_open_and_launched_once_a_trial_closes_the_circuit(setup, tmp_path):
    schedule, sensor, resources, breaker, instance = setup
    with pytest.raises(SourceUnavailableError):
        breaker.call(outage)  # a run found the source down: the circuit opens
    first = schedule_tick(schedule, resources, instance, 12)
    second = schedule_tick(schedule, resources, instance, 13)
    assert isinstance(first, dg.SkipReason) and isinstance(second, dg.SkipReason)
    assert first.skip_message.startswith("hour 2026-03-06-11:00 deferred: circuit 'source' is open")
    assert "orders database unreachable" in first.skip_message
    assert list(DeferredHours(tmp_path / "data", "scalable_data_processing").all()) == ["2026-03-06-11:00", "2026-03-06-12:00"]

    held = sensor_tick(sensor, resources, instance)
    assert isinstance(held, dg.SkipReason) and held.skip_message.startswith("2 hour(s) deferred: circuit 'source' is open")

    ManualClockBreaker.seconds[0] = NOW + 300  # the cool-down is over: the sensor's health check is the trial
    launched = sensor_tick(sensor, resources, instance)
    assert [request.partition_key for request in launched.run_requests] == ["2026-03-06-11:00", "2026-03-06-12:00"]
    assert breaker.state().status == "closed"
    assert DeferredHours(tmp_path / "data", "scalable_data_processing").all() == {}
    assert sensor_tick(sensor, resources, instance).skip_message == "no deferred hours"
    assert isinstance(schedule_tick(schedule, resources, instance, 14), dg.RunRequest)


def test_a_failed_trial_keeps_the_hours_deferred(setup, tmp_path):
    schedule, sensor, resources, breaker, instance = setup
    resources = {**resources, "source": LandingFileSource(landing_dir=str(tmp_path / "not-mounted"))}
    with pytest.raises(SourceUnavailableError):
        breaker.call(outage)
    schedule_tick(schedule, resources, instance, 12)
    ManualClockBreaker.seconds[0] = NOW + 300
    result = sensor_tick(sensor, resources, instance)
    assert (
        isinstance(result, dg.SkipReason)
        and "the trial call failed" in result.skip_message
        and "not-mounted" in result.skip_message
    )
    assert breaker.state().status == "open"
    assert list(DeferredHours(tmp_path / "data", "scalable_data_processing").all()) == ["2026-03-06-11:00"]
