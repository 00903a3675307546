"""How one pipeline entry names and binds its definitions: asset keys, op names, resource keys, time rules.

The asset modules write their steps once, as functions taking resources by their plain names (``source``,
``scaling``, ``quality``, ``data_store``); ``PipelineBuild.asset`` and ``PipelineBuild.op`` turn them into
the entry's definitions. The pipeline with ``key_prefix: []`` keeps today's unprefixed asset keys, op names
and resource keys; every other pipeline prefixes them with its name, so pipelines never share a resource,
a data root or an op. A step whose hour matches one of the entry's ``time_rules`` gets that rule's scaling
and quality fields, and its asset output says which rule applied (``time_rule``).
"""

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from scalable_pipeline.core.constants import StepContext
from scalable_pipeline.pipelines.config import PipelineSpec
from scalable_pipeline.pipelines.time_rules import resolve
from scalable_pipeline.scaling.pools import reserved_pool

# Resources each pipeline has its own of (under "<name>__<key>" unless it is the unprefixed pipeline).
PIPELINE_RESOURCES = ("source", "scaling", "quality", "data_store", "versioned_store_io_manager")
NO_TIME_RULE = "none"
# The step priority (op tag) of the priority path's chunk steps: ahead of every other step for a pool's slots.
PRIORITY_STEP_TAGS = {"dagster/priority": "10"}


@dataclass(frozen=True)
class PipelineBuild:
    spec: PipelineSpec

    @functools.cached_property
    def partitions_def(self) -> dg.HourlyPartitionsDefinition:
        return dg.HourlyPartitionsDefinition(start_date=self.spec.start)

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
        """Tags of every run of the pipeline's job: the queue dequeues higher ``dagster/priority`` first."""
        return {"dagster/priority": str(self.spec.priority)}

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
        """``specs`` on this pipeline's key of their asset."""
        return [
            dg.AssetCheckSpec(s.name, asset=self.key(s.asset_key.path[-1]), description=s.description, blocking=s.blocking)
            for s in specs
        ]

    def asset(self, fn: Callable, *, ins: Sequence[str] = (), **asset_args: Any) -> dg.AssetsDefinition:
        """``fn`` as this pipeline's hourly asset of the same name, stored by its versioned store."""
        return dg.asset(
            name=fn.__name__,
            key_prefix=list(self.spec.key_prefix),
            ins=self.ins(*ins),
            partitions_def=self.partitions_def,
            group_name=self.group,
            io_manager_key=self.io_manager_key,
            **asset_args,
        )(self.bind(fn))

    def op(self, fn: Callable, name: str | None = None, **op_args: Any) -> dg.OpDefinition | dg.PendingNodeInvocation:
        """``fn`` as this pipeline's node ``name`` (default the function's name); ``tags`` are the node's step tags.

        Nodes share one op definition where only their names and tags differ (each op definition costs about a
        millisecond to build, at every load): in a pipeline, the nodes of one function with equal arguments (the
        priority path's chunk, range and fan-out nodes are aliases of the fan-out path's, tagged with their step
        priority); across pipelines, the nodes of a function that takes no pipeline resource and no pool (the
        joins). Node names, and so step keys, stay the pipeline's own.
        """
        node = self.node(name or fn.__name__)
        tags = op_args.pop("tags", None)
        definition = self._op_definition(fn, node, op_args)
        invocation = definition if definition.name == node else definition.alias(node)
        return invocation.tag(tags) if tags else invocation

    @functools.cached_property
    def _op_definitions(self) -> list[tuple[Callable, dict[str, Any], dg.OpDefinition]]:
        return []

    def _op_definition(self, fn: Callable, node: str, op_args: dict[str, Any]) -> dg.OpDefinition:
        """The op definition of ``fn`` with ``op_args``: the pipeline's, or every pipeline's if nothing in it is theirs."""
        shared = _SHARED_OPS if is_shared(fn, op_args) else self._op_definitions
        for known_fn, known_args, definition in shared:
            if known_fn is fn and known_args == op_args:
                return definition
        name = fn.__name__ if shared is _SHARED_OPS else node
        if any(definition.name == name for _, _, definition in shared):  # same function, other arguments
            shared, name = self._op_definitions, node
        definition = dg.op(name=name, **op_args)(fn if shared is _SHARED_OPS else self.bind(fn))
        shared.append((fn, dict(op_args), definition))
        return definition

    def bind(self, fn: Callable) -> Callable:
        """``fn`` with its resource parameters renamed to this pipeline's resource keys, time rules applied."""
        if self.unprefixed and not self.spec.time_rules:
            return fn
        signature = inspect.signature(fn)
        renamed = {name: self.resource_key(name) for name in signature.parameters if name in PIPELINE_RESOURCES}
        plain = {key: name for name, key in renamed.items()}
        timed = bool(self.spec.time_rules) and bool({"scaling", "quality"} & set(renamed))

        def call(args: tuple, kwargs: dict) -> tuple[Any, str | None]:
            kwargs = {plain.get(key, key): value for key, value in kwargs.items()}
            rule = self.apply_time_rules(args[0] if args else kwargs["context"], kwargs) if timed else None
            return fn(*args, **kwargs), rule

        if inspect.isgeneratorfunction(fn):

            def wrapper(*args, **kwargs):
                events, rule = call(args, kwargs)
                for event in events:
                    if rule and isinstance(event, dg.Output) and event.output_name == "result":
                        event = event.with_metadata({**event.metadata, "time_rule": rule})
                    yield event

        else:

            def wrapper(*args, **kwargs):
                return call(args, kwargs)[0]

        functools.update_wrapper(wrapper, fn)
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p.replace(name=renamed.get(p.name, p.name)) for p in signature.parameters.values()]
        )
        wrapper.__annotations__ = {renamed.get(k, k): v for k, v in fn.__annotations__.items()}
        return wrapper

    def apply_time_rules(self, context: StepContext, resources: dict[str, Any]) -> str:
        """Replace ``scaling`` and ``quality`` in ``resources`` by their settings for the step's hour; the rule's name."""
        hour = context.partition_time_window.start
        current = {name: field_values(resources[name]) for name in ("scaling", "quality") if name in resources}
        settings = resolve(self.spec.time_rules, hour, current.get("scaling", {}), current.get("quality", {}))
        for name, values in (("scaling", settings.scaling), ("quality", settings.quality)):
            if name in resources:
                resources[name] = type(resources[name])(**values)
        if settings.rule:
            context.log.info(f"time rule {settings.rule!r} applies to hour {hour:%Y-%m-%d %H:00}")
        return settings.rule or NO_TIME_RULE


# Op definitions every pipeline shares (functions of no pipeline resource, no pool), by function and arguments.
_SHARED_OPS: list[tuple[Callable, dict[str, Any], dg.OpDefinition]] = []


def is_shared(fn: Callable, op_args: dict[str, Any]) -> bool:
    """Whether ``fn`` as an op with ``op_args`` is the same for every pipeline: no pipeline resource, pool or IO manager."""
    outs = op_args.get("out", {})
    outs = outs.values() if isinstance(outs, dict) else [outs]
    return (
        not set(inspect.signature(fn).parameters) & set(PIPELINE_RESOURCES)
        and "pool" not in op_args
        and all(out.io_manager_key == "io_manager" for out in outs)
    )


def field_values(resource: dg.ConfigurableResource) -> dict[str, Any]:
    """A resource's configured fields by name (what builds an equal resource)."""
    return {name: getattr(resource, name) for name in type(resource).model_fields}
