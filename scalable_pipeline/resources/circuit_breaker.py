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

    data_store: dg.ResourceDependency[DataStoreResource]
    failure_threshold: int = Field(default=3, ge=1, description="Consecutive failures that open the circuit.")
    window_seconds: float = Field(default=300.0, gt=0, description="Failures older than this do not count.")
    cooldown_seconds: float = Field(default=60.0, ge=0, description="How long an open circuit fails fast before a trial call.")

    def breaker(self, name: str) -> DurableCircuitBreaker:
        settings = BreakerSettings(self.failure_threshold, self.window_seconds, self.cooldown_seconds)
        return DurableCircuitBreaker(self.data_store.root, name, settings)

    def call(self, name: str, fn: Callable[[], T]) -> T:
        return self.breaker(name).call(fn)
