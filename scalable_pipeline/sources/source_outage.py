"""What the data-arrival sensors share: their resources, and reading the source under its circuit
breaker's deferral decision."""

from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.deferral import LAUNCH, PROBE, Deferral, OutageMode, deferral

T = TypeVar("T")
BREAKER_KEY = "circuit_breaker"


def pipeline_resources(
    context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext, data_store_key: str
) -> tuple[DataStoreResource, CircuitBreakerResource]:
    """The pipeline's data store (its own resource key) and the circuit breakers. The sensors name them in
    ``required_resource_keys`` and take ``**_resources``: called directly (tests), Dagster passes them as
    keyword arguments."""
    return getattr(context.resources, data_store_key), getattr(context.resources, BREAKER_KEY)


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
