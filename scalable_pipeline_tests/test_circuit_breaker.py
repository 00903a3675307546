"""Circuit breaker: the pure transitions, the durable breaker, and the source behind it in a run."""

import time

import dagster as dg
import pytest

from scalable_pipeline.decisions.circuit_breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSettings,
    BreakerState,
    admit,
    record_failure,
    record_success,
)
from scalable_pipeline.definitions import build_resources, defs
from scalable_pipeline.resources.circuit_breaker import CircuitBreakerResource
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.faults import FaultInjectionResource
from scalable_pipeline.storage.circuit_breaker import CircuitOpenError, DurableCircuitBreaker
from scalable_pipeline_tests.conftest import PEAK_PARTITION

SETTINGS = BreakerSettings(failure_threshold=3, window_seconds=60, cooldown_seconds=30)


def fail(state: BreakerState, now: float) -> BreakerState:
    return record_failure(state, now, SETTINGS, "boom")


def test_opens_after_k_consecutive_failures_within_the_window():
    state = fail(fail(BreakerState(), 0), 1)
    assert state.status == CLOSED and admit(state, 2, SETTINGS)[0]
    state = fail(state, 2)
    assert state.status == OPEN and state.opened_at == 2
    assert admit(state, 31, SETTINGS) == (False, state)  # fails fast during the cool-down


def test_old_failures_and_successes_reset_the_count():
    assert fail(fail(fail(BreakerState(), 0), 1), 100).status == CLOSED  # the first two left the window
    assert fail(fail(record_success(), 2), 3).status == CLOSED


def test_half_open_trial_closes_or_reopens():
    opened = fail(fail(fail(BreakerState(), 0), 0), 0)
    allowed, trial = admit(opened, 30, SETTINGS)
    assert allowed and trial.status == HALF_OPEN
    assert admit(trial, 31, SETTINGS)[0] is False  # one trial at a time
    assert record_success() == BreakerState()
    reopened = fail(trial, 32)
    assert reopened.status == OPEN and admit(reopened, 61, SETTINGS)[0] is False and admit(reopened, 62, SETTINGS)[0]


def test_durable_breaker_state_is_shared_through_the_data_root(tmp_path):
    clock = [0.0]
    calls = []

    def broken():
        calls.append(1)
        raise TimeoutError("source timed out")

    def breaker():  # a fresh object each time, as a new run would build
        return DurableCircuitBreaker(tmp_path, "source", SETTINGS, clock=lambda: clock[0])

    for _ in range(3):
        with pytest.raises(TimeoutError):
            breaker().call(broken)
    with pytest.raises(CircuitOpenError, match="circuit 'source' is open after 3 consecutive failures"):
        breaker().call(broken)
    assert len(calls) == 3  # the open circuit did not call the source
    clock[0] = 31.0
    assert breaker().call(lambda: "ok") == "ok"
    assert breaker().state() == BreakerState()


def test_bad_data_errors_propagate_without_counting_as_failures(tmp_path):
    breaker = DurableCircuitBreaker(tmp_path, "source", SETTINGS, clock=lambda: 0.0)
    with pytest.raises(TimeoutError):
        breaker.call(lambda: (_ for _ in ()).throw(TimeoutError("down")))
    assert len(breaker.state().failure_times) == 1
    for _ in range(5):  # far more than the threshold of bad files: still closed, and the count was reset
        with pytest.raises(ValueError):
            breaker.call(lambda: (_ for _ in ()).throw(ValueError("bad file")), not_outage=(ValueError,))
    assert breaker.state() == BreakerState()


def test_source_breaker_opens_fails_fast_and_closes_after_cool_down(instance):
    assets = [defs.get_assets_def("raw_volume")]
    breaker = CircuitBreakerResource(failure_threshold=2, cooldown_seconds=1.0)

    def run(fail_source: bool) -> dg.ExecuteInProcessResult:
        resources = {**build_resources(), "circuit_breaker": breaker, "faults": FaultInjectionResource(fail_source=fail_source)}
        return dg.materialize(assets, partition_key=PEAK_PARTITION, resources=resources, instance=instance, raise_on_error=False)

    def failure_message(result) -> str:
        return str(next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE).event_specific_data)

    assert "simulated source outage" in failure_message(run(True))
    assert "simulated source outage" in failure_message(run(True))
    fast = run(False)  # the source is back, but the circuit is open: no call until the cool-down passes
    assert not fast.success and "circuit 'source' is open" in failure_message(fast)
    time.sleep(1.1)
    assert run(False).success
    assert breaker.breaker("source", DataStoreResource()).state().status == CLOSED
