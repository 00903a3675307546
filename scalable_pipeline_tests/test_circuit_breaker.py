"""Circuit breaker: the pure transitions, the durable breaker, and the source behind it in a run."""

from collections.abc import Iterator

import pandas as pd
import pytest

from scalable_pipeline.faults.resource import FaultInjectionResource
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.sources.circuit_breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSettings,
    BreakerState,
    admit,
    record_failure,
    record_success,
)
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.circuit_breaker_store import CircuitOpenError, DurableCircuitBreaker
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests.conftest import ManualClockBreaker, failure_message, materialize_raw

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


def raises(error: Exception):
    def call():
        raise error

    return call


@pytest.mark.parametrize(
    "outage",
    [TimeoutError("timed out"), ConnectionRefusedError("refused"), OSError(5, "I/O error"), SourceUnavailableError("unmounted")],
)
def test_outages_count_towards_opening(tmp_path, outage):
    breaker = DurableCircuitBreaker(tmp_path, "source", SETTINGS, clock=lambda: 0.0)
    for _ in range(3):
        with pytest.raises(type(outage)):
            breaker.call(raises(outage))
    assert breaker.state().status == OPEN and type(outage).__name__ in breaker.state().last_error


def test_other_errors_propagate_and_count_as_the_dependency_answering(tmp_path):
    breaker = DurableCircuitBreaker(tmp_path, "source", SETTINGS, clock=lambda: 0.0)
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError("down")))
    assert len(breaker.state().failure_times) == 1
    for error in [ValueError("bad file"), KeyError("column"), OverflowError("inf"), TypeError("a bug")] * 2:
        with pytest.raises(type(error)):
            breaker.call(raises(error))
    assert breaker.state() == BreakerState()  # still closed, and the outage before was forgotten


class GarbledSource(SyntheticOrderSource):
    """A source that answers with data that cannot be orders after a good block: bad data, not an outage."""

    def iter_hour(self, hour_start: pd.Timestamp) -> Iterator[pd.DataFrame]:
        yield next(super().iter_hour(hour_start))
        raise ValueError("the payload is not a table of orders")


def test_bad_data_in_a_row_does_not_open_the_circuit(instance):
    breaker = CircuitBreakerResource()
    for _ in range(breaker.failure_threshold + 2):
        result = materialize_raw(instance, circuit_breaker=breaker, source=GarbledSource())
        assert not result.success and "the payload is not a table of orders" in failure_message(result)
    assert materialize_raw(instance, circuit_breaker=breaker).success  # a good hour right after
    assert breaker.breaker("source", DataStoreResource()).state() == BreakerState()


def test_simulated_outages_open_the_circuit_which_fails_fast_and_closes_after_cool_down(instance):
    ManualClockBreaker.seconds[0] = 1_000.0
    breaker = ManualClockBreaker()  # defaults: 3 outages open it, for a 60 s cool-down
    outage = FaultInjectionResource(fail_source=True)
    for _ in range(3):
        assert "simulated source outage" in failure_message(materialize_raw(instance, circuit_breaker=breaker, faults=outage))
    ManualClockBreaker.seconds[0] += breaker.cooldown_seconds - 1
    fast = materialize_raw(instance, circuit_breaker=breaker)  # the source is back, but the circuit is open
    assert not fast.success and "circuit 'source' is open after 3 consecutive failures" in failure_message(fast)
    assert "SimulatedSourceOutage" in failure_message(fast)
    ManualClockBreaker.seconds[0] += 1
    assert materialize_raw(instance, circuit_breaker=breaker).success  # the trial call goes through and closes it
    assert breaker.breaker("source", DataStoreResource()).state().status == CLOSED
