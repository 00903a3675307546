"""What the data-arrival sensors share: reading the source under its circuit breaker's deferral decision."""

from collections.abc import Callable
from typing import TypeVar

from scalable_pipeline.decisions.deferral import LAUNCH, PROBE, Deferral, OutageMode, deferral
from scalable_pipeline.resources.circuit_breaker import CircuitBreakerResource
from scalable_pipeline.resources.data_store import DataStoreResource

T = TypeVar("T")


def read_source(
    breakers: CircuitBreakerResource,
    data_store: DataStoreResource,
    circuit: str,
    mode: OutageMode,
    now: float,
    read: Callable[[], T],
) -> tuple[T, Deferral]:
    """``read()`` and whether to launch or defer what it found.

    When the open circuit allows a trial, the read is that trial (through the breaker): if it succeeds the
    circuit closes and the hours are launched. Otherwise the read bypasses the breaker. Raises what
    ``read`` raises (an ``OSError`` when the source is down).
    """
    breaker = breakers.breaker(circuit, data_store)
    decision = deferral(mode, circuit, breaker.state(), now, breakers.settings)
    if decision.action != PROBE:
        return read(), decision
    found = breaker.call(read)
    return found, Deferral(LAUNCH, "")
