"""One source of truth per setting: each resource mirrors its settings dataclass by field name and default."""

from dataclasses import dataclass, fields

import pytest

from scalable_pipeline.core.settings import from_fields
from scalable_pipeline.faults.resource import FaultInjectionResource
from scalable_pipeline.faults.rules import FaultPlan
from scalable_pipeline.sources.circuit_breaker import BreakerSettings
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline.sources.synthetic_orders import SyntheticOrdersSpec

MIRRORS = [
    (CircuitBreakerResource, BreakerSettings, lambda resource: resource.settings),
    (SyntheticOrderSource, SyntheticOrdersSpec, lambda resource: resource.spec),
    (FaultInjectionResource, FaultPlan, lambda resource: resource.plan),
]


@pytest.mark.parametrize("resource_class, settings_class, settings_of", MIRRORS)
def test_resource_fields_and_defaults_are_the_dataclass(resource_class, settings_class, settings_of):
    assert list(resource_class.model_fields) == [field.name for field in fields(settings_class)]
    assert settings_of(resource_class()) == settings_class()


def test_settings_are_copied_by_name_not_by_position():
    assert CircuitBreakerResource(cooldown_seconds=9, failure_threshold=5).settings == BreakerSettings(
        failure_threshold=5, window_seconds=BreakerSettings.window_seconds, cooldown_seconds=9
    )
    assert SyntheticOrderSource(seed=3, invalid_rate=0.2).spec == SyntheticOrdersSpec(invalid_rate=0.2, seed=3)
    assert FaultInjectionResource(fail_chunks=[2], slow_seconds=1, fail_source=True).plan == FaultPlan(
        fail_chunks=(2,), slow_seconds=1, fail_source=True
    )

    @dataclass(frozen=True)
    class Reversed:
        b: int = 0
        a: int = 0

    class Source:
        a, b = 1, 2

    assert from_fields(Reversed, Source()) == Reversed(b=2, a=1)
    assert from_fields(Reversed, Source(), a=7) == Reversed(b=2, a=7)
