"""Circuit breaker settings (resource key ``circuit_breaker``); state is kept under the data root."""

from collections.abc import Callable
from typing import TypeVar

import dagster as dg
from pydantic import Field

from scalable_pipeline.decisions.circuit_breaker import BreakerSettings
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.storage.circuit_breaker import DurableCircuitBreaker

T = TypeVar("T")


class CircuitBreakerResource(dg.ConfigurableResource):
    """One breaker per external dependency name, shared by all runs on the same data root."""

    failure_threshold: int = Field(default=3, ge=1, description="Consecutive failures that open the circuit.")
    window_seconds: float = Field(default=300.0, gt=0, description="Failures older than this do not count.")
    cooldown_seconds: float = Field(default=60.0, ge=0, description="How long an open circuit fails fast before a trial call.")

    def breaker(self, name: str, data_store: DataStoreResource) -> DurableCircuitBreaker:
        settings = BreakerSettings(self.failure_threshold, self.window_seconds, self.cooldown_seconds)
        return DurableCircuitBreaker(data_store.root, name, settings)

    def call(
        self, name: str, data_store: DataStoreResource, fn: Callable[[], T], not_outage: tuple[type[Exception], ...] = ()
    ) -> T:
        """``fn()`` through the breaker ``name``, whose state lives under ``data_store``'s root; errors of
        the ``not_outage`` types propagate without counting as failures."""
        return self.breaker(name, data_store).call(fn, not_outage)
