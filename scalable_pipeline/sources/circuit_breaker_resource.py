"""Circuit breaker settings (resource key ``circuit_breaker``); state is kept under the data root."""

import time
from collections.abc import Callable
from typing import TypeVar

import dagster as dg
from pydantic import Field

from scalable_pipeline.core.settings import from_fields
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.sources.circuit_breaker import BreakerSettings
from scalable_pipeline.sources.circuit_breaker_store import DurableCircuitBreaker

T = TypeVar("T")


class CircuitBreakerResource(dg.ConfigurableResource):
    """One breaker per external dependency name, shared by all runs on the same data root."""

    failure_threshold: int = Field(
        default=BreakerSettings.failure_threshold, ge=1, description="Consecutive outages that open the circuit."
    )
    window_seconds: float = Field(
        default=BreakerSettings.window_seconds, gt=0, description="Outages older than this do not count."
    )
    cooldown_seconds: float = Field(
        default=BreakerSettings.cooldown_seconds, ge=0, description="How long an open circuit fails fast before a trial call."
    )

    @property
    def settings(self) -> BreakerSettings:
        return from_fields(BreakerSettings, self)

    def now(self) -> float:
        """The breakers' clock, seconds since the epoch (tests override it to move time without sleeping)."""
        return time.time()

    def breaker(self, name: str, data_store: DataStoreResource) -> DurableCircuitBreaker:
        return DurableCircuitBreaker(data_store.root, name, self.settings, clock=self.now)

    def call(self, name: str, data_store: DataStoreResource, fn: Callable[[], T]) -> T:
        """``fn()`` through the breaker ``name``, whose state lives under ``data_store``'s root. Only outages
        (``OSError``) count as failures; other errors propagate and count as the dependency answering."""
        return self.breaker(name, data_store).call(fn)
