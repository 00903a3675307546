"""How one pipeline entry names its definitions and reaches its resources: asset keys, op names, resource keys,
time rules.

The pipeline with ``key_prefix: []`` keeps today's unprefixed asset keys, op names and resource keys; every
other pipeline prefixes them with its name, so pipelines never share a resource, a data root or an op. Each
asset module's builder defines its steps inside, closing over the entry's ``PipelineBuild``: a step names the
resources it needs (``required_resource_keys=build.resource_keys("data_store", ...)``) and reads them by their
plain names (``build.resources(context).data_store``). A step whose hour matches one of the entry's
``time_rules`` gets that rule's scaling and quality fields, and its asset output says which rule applied
(``time_rule``).
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.faults.resource import FaultInjectionResource
from scalable_pipeline.pipelines.config import PipelineSpec
from scalable_pipeline.pipelines.time_rules import resolve
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.quality.gate_results import pipeline_gate_spec
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.scaling.pools import reserved_pool
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline.sources.resource import OrderSource

# Resources each pipeline has its own of (under "<name>__<key>" unless it is the unprefixed pipeline).
PIPELINE_RESOURCES = ("source", "scaling", "quality", "data_store", "versioned_store_io_manager")
NO_TIME_RULE = "none"
# The step priority (op tag) of the priority path's chunk steps: ahead of every other step for a pool's slots.
PRIORITY_STEP_TAGS = {"dagster/priority": "10"}


@dataclass(frozen=True)
class PipelineBuild:
    spec: PipelineSpec

    @property
    def partitions_def(self) -> dg.HourlyPartitionsDefinition:
        return self.spec.partitions_def

    @property
    def unprefixed(self) -> bool:
        return not self.spec.key_prefix

    @property
    def group(self) -> str:
        return self.spec.name

    @property
    def pool(self) -> str:
        return self.spec.pool

    @property
    def reserved_pool(self) -> str | None:
        return reserved_pool(self.spec.name) if self.spec.reserved_slots else None

    @property
    def io_manager_key(self) -> str:
        return self.resource_key("versioned_store_io_manager")

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags of every run of the pipeline's job: the queue dequeues higher ``dagster/priority`` first, and a run
        retry (instance ``run_retries``) runs every step: a retry from failure would skip the chunk steps a dead
        run had not started (dagster#20925); a whole new run reuses the chunks it finished."""
        return {"dagster/priority": str(self.spec.priority), "dagster/retry_strategy": "ALL_STEPS"}

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """A backfill runs up to ``backfill_hours_per_run`` hours per run, each hour processed and gated on its own."""
        return dg.BackfillPolicy.multi_run(self.spec.backfill_hours_per_run)

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([*self.spec.key_prefix, asset])

    def resource_key(self, key: str) -> str:
        return key if self.unprefixed or key not in PIPELINE_RESOURCES else f"{self.spec.name}__{key}"

    def node(self, name: str) -> str:
        """An op's name: op names are unique across every pipeline's job."""
        return name if self.unprefixed else f"{self.spec.name}__{name}"

    def ins(self, *assets: str) -> dict[str, dg.AssetIn]:
        return {asset: dg.AssetIn(key=self.key(asset)) for asset in assets}

    def check_specs(self, specs: Sequence[dg.AssetCheckSpec]) -> list[dg.AssetCheckSpec]:
        """``specs`` on this pipeline's key of their asset, blocking as the severity its ``quality`` settings give each gate."""
        return [pipeline_gate_spec(s, self.key(s.asset_key.path[-1]), self.spec.quality) for s in specs]

    def resource_keys(self, *names: str) -> set[str]:
        """This pipeline's keys of the resources ``names`` (their plain names: ``source``, ``scaling``, ``faults``...)."""
        return {self.resource_key(name) for name in names}

    def resources(self, context: StepContext) -> "StepResources":
        """The step's resources by their plain names (those its ``required_resource_keys`` name)."""
        return StepResources(self, context)

    def asset(self, *, ins: Sequence[str] = (), **asset_args: Any) -> Callable[[Callable], dg.AssetsDefinition]:
        """Decorator: the function as this pipeline's hourly asset of the same name, stored by its versioned store."""
        return dg.asset(
            key_prefix=list(self.spec.key_prefix),
            ins=self.ins(*ins),
            partitions_def=self.partitions_def,
            group_name=self.group,
            io_manager_key=self.io_manager_key,
            backfill_policy=self.backfill_policy,
            **asset_args,
        )


@dataclass(frozen=True)
class StepResources:
    """A step's resources by their plain names, read from its pipeline's keys in ``context.resources``.

    ``scaling`` and ``quality`` are those of the step's hour: the first of the pipeline's ``time_rules`` that
    matches the hour replaces their fields, and ``time_rule_metadata`` names it for the step's asset output.
    """

    build: PipelineBuild
    context: StepContext

    def get(self, name: str) -> Any:
        return getattr(self.context.resources, self.build.resource_key(name))

    @property
    def source(self) -> OrderSource:
        return self.get("source")

    @property
    def data_store(self) -> DataStoreResource:
        return self.get("data_store")

    @property
    def circuit_breaker(self) -> CircuitBreakerResource:
        return self.get("circuit_breaker")

    @property
    def faults(self) -> FaultInjectionResource:
        return self.get("faults")

    @functools.cached_property
    def scaling(self) -> ScalingResource:
        return self.for_hour("scaling")

    @functools.cached_property
    def quality(self) -> QualityResource:
        return self.for_hour("quality")

    @functools.cached_property
    def time_rule(self) -> str | None:
        """The name of the time rule matching the step's hour (logged), None if none does."""
        if not self.build.spec.time_rules:
            return None
        hour = self.context.partition_time_window.start
        rule = resolve(self.build.spec.time_rules, hour, {}, {}).rule
        if rule:
            self.context.log.info(f"time rule {rule!r} applies to hour {hour:%Y-%m-%d %H:00}")
        return rule

    @property
    def time_rule_metadata(self) -> dict[str, str]:
        """``time_rule``, the rule that set the step's settings (``none``: the pipeline's own), if the pipeline has rules."""
        return {"time_rule": self.time_rule or NO_TIME_RULE} if self.build.spec.time_rules else {}

    def for_hour(self, name: str) -> Any:
        """Resource ``name`` (``scaling`` or ``quality``) with the fields of the time rule matching the step's hour."""
        resource = self.get(name)
        if self.time_rule is None:
            return resource
        fields = {setting: field_values(resource) if setting == name else {} for setting in ("scaling", "quality")}
        settings = resolve(self.build.spec.time_rules, self.context.partition_time_window.start, **fields)
        return type(resource)(**getattr(settings, name))


def field_values(resource: dg.ConfigurableResource) -> dict[str, Any]:
    """A resource's configured fields by name (what builds an equal resource)."""
    return {name: getattr(resource, name) for name in type(resource).model_fields}
