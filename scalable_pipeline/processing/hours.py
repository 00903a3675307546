"""The hours of a step: one hour, or every hour of a range run (a backfill's ``BackfillPolicy``).

A run of one hour behaves as a step of one partition always has: a failed ERROR gate fails the step. A range
run processes every hour of its range in each step, each hour its own unit (its raw version, plan,
checkpoints, gates, publish and rollback): ``each_hour`` runs a stage's work hour by hour, reports each hour's
gates on its partition (``AssetCheckEvaluation(partition=...)``) and its metadata on its partition
(``add_asset_metadata``), and carries on past an hour whose gate failed (rolled back, reported, left out of
the hours handed downstream). Dagster records one materialization per hour of the range for a step that
completes; an hour left out carries ``published: false`` and why. ``consolidated_output`` materializes hour
by hour, so its failed hours show as failed, and fails the run naming them.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from scalable_pipeline.core.asset_keys import StepContext

# Metadata on an hour of a range run that published nothing, and why.
PUBLISHED_KEY = "published"
NOT_PUBLISHED_KEY = "not_published_because"


class ByHour(dict):
    """Values of an upstream stage by hour: every hour of the step that this run's lineage produced;
    ``left_out``: the hours its range run left out, with why."""

    left_out: dict[str, str]

    def __init__(self, values: Mapping[str, Any], left_out: Mapping[str, str] | None = None):
        super().__init__(values)
        self.left_out = dict(left_out or {})


class HourVersions(ByHour):
    """The upstream stage's ``StoredVersion`` by hour."""


class HourPlans(ByHour):
    """The ``ChunkPlan`` by hour."""


def step_hours(context: StepContext) -> list[str]:
    """The hours the step processes: its partition, or every hour of its range."""
    return list(context.partition_keys)


def left_out_upstream(hours: Sequence[str], upstream: ByHour, name: str) -> dict[str, str]:
    """The hours missing from an upstream stage's output, with why."""
    return {
        hour: f"{name} was not published: {upstream.left_out.get(hour, 'no version in this run')}"
        for hour in hours
        if hour not in upstream
    }


class HourContext:
    """A step's context narrowed to one hour of its range: ``partition_key`` and ``partition_time_window`` are
    the hour's, everything else (run, instance, log, resources, asset) is the step's."""

    def __init__(self, context: StepContext, hour: str):
        self._context = context
        self.partition_key = hour
        self.partition_time_window = partitions_of(context).time_window_for_partition_key(hour)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def partitions_of(context: StepContext) -> dg.TimeWindowPartitionsDefinition:
    partitions = context.assets_def.partitions_def
    if not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        raise TypeError(f"{context.assets_def.key.to_user_string()} is not partitioned by hour")
    return partitions


def hour_context(context: StepContext, hour: str) -> StepContext:
    """The step's context for ``hour``: the step's own when it processes that one hour."""
    return context if list(context.partition_keys) == [hour] else HourContext(context, hour)  # type: ignore[return-value]


@dataclass
class RangeOutcome:
    """What a range step did: each hour's output value and the hours it left out, with why."""

    values: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    checks: dict[str, list[bool]] = field(default_factory=dict)


def each_hour(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    hours: Sequence[str],
    work: Callable[[StepContext, str], Iterator[Any]],
    *,
    missing: Mapping[str, str] | None = None,
    stored_metadata: Callable[[Any], Mapping[str, Any]] = lambda _: {},
    materialize_each: bool = False,
) -> Iterator[Any]:
    """Run ``work(hour_context, hour)`` for every hour and re-emit what it yields for the step.

    One hour: its events unchanged (a failed gate fails the step). A range: each hour's check results go to the
    hour's partition, its output's metadata (and ``stored_metadata`` of its value) too; an hour whose work fails
    with ``dg.Failure`` (a failed gate, a rejected file) is reported and left out, as are ``missing`` hours (left
    out upstream). Then one check result per gate for the range (WARN when an hour failed it, so it blocks no
    other hour) and one Output of the hours' values by hour; with ``materialize_each``, a materialization per
    hour instead of the Output, and a failure naming the hours left out.
    """
    if len(hours) == 1 and list(context.partition_keys) == list(hours) and not missing:
        yield from work(context, hours[0])
        return
    outcome = RangeOutcome(left_out=dict(missing or {}))
    for hour in hours:
        if hour in outcome.left_out:
            continue
        try:
            for event in work(hour_context(context, hour), hour):
                if isinstance(event, dg.AssetCheckResult):
                    record_check(context, asset_key, hour, event, outcome)
                elif isinstance(event, dg.Output):
                    outcome.values[hour] = event.value
                    metadata = {**event.metadata, **stored_metadata(event.value), PUBLISHED_KEY: True}
                    if materialize_each:
                        context.log_event(dg.AssetMaterialization(asset_key=asset_key, partition=hour, metadata=metadata))
                    else:
                        context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=hour)
                else:
                    raise TypeError(f"an hour's work yielded {type(event).__name__}")
        except dg.Failure as failure:
            outcome.left_out[hour] = failure.description or "failed"
            context.log.error(f"{asset_key.to_user_string()} hour {hour}: {failure.description}")
    if not materialize_each:
        for hour, why in outcome.left_out.items():
            context.add_asset_metadata({PUBLISHED_KEY: False, NOT_PUBLISHED_KEY: why}, asset_key=asset_key, partition_key=hour)
    yield from range_check_results(context, asset_key, outcome)
    if not materialize_each:
        yield dg.Output(dict(outcome.values), metadata={"hours": len(hours), "hours_left_out": sorted(outcome.left_out)})
    elif outcome.left_out:
        raise dg.Failure(
            description=f"{len(outcome.left_out)} of {len(hours)} hours were not published: "
            + "; ".join(f"{hour}: {why}" for hour, why in sorted(outcome.left_out.items())),
            metadata={"hours_left_out": sorted(outcome.left_out)},
            allow_retries=False,
        )


def record_check(
    context: StepContext, asset_key: dg.AssetKey, hour: str, result: dg.AssetCheckResult, outcome: RangeOutcome
) -> None:
    """An hour's check result, on the hour's partition."""
    check_name = result.check_name or ""
    outcome.checks.setdefault(check_name, []).append(result.passed)
    context.log_event(  # Dagster records a check evaluation logged by the step (its annotation names fewer types)
        dg.AssetCheckEvaluation(  # type: ignore[arg-type]
            asset_key=asset_key,
            check_name=check_name,
            passed=result.passed,
            metadata=result.metadata,
            severity=result.severity,
            description=result.description,
            partition=hour,
        )
    )


def range_check_results(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, outcome: RangeOutcome
) -> Iterator[dg.AssetCheckResult]:
    """One result per gate of the asset for the whole range (each hour's own is on its partition)."""
    for spec in context.assets_def.check_specs:
        if spec.asset_key != asset_key:
            continue
        passed = outcome.checks.get(spec.name, [])
        failed = passed.count(False)
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=spec.name,
            passed=bool(passed) and not failed,
            severity=dg.AssetCheckSeverity.WARN if failed or not passed else dg.AssetCheckSeverity.ERROR,
            description=f"{len(passed) - failed} of {len(passed)} hours checked passed; each hour's result is on its partition.",
            metadata={"hours_checked": len(passed), "hours_failed": failed},
        )
